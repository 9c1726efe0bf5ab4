package peers

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// peerTLSJava is the Java side of JavaClient and JavaServer, run with the
// single-file source launcher.
//
//go:embed PeerTLS.java
var peerTLSJava []byte

// javaFlags start the JVM quickly; the program does one handshake.
var javaFlags = []string{"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto"}

// JavaClient proves that Java 17's JSSE, as a TLS client, accepts the
// server certificate server.Cert (with server.Key) presented by a Go TLS
// server on 127.0.0.1. Java trusts java.CACert, checks revocation against
// java.CRL when set, identifies the server as host with the "HTTPS"
// endpoint identification algorithm ("localhost" or "127.0.0.1"), and
// presents java.Cert and java.Key as its client certificate when set.
//
// It returns nil when Java completed the handshake, and otherwise an error
// holding Java's output (the exception chain, such as "No subject
// alternative names matching IP address 127.0.0.1 found"). The Go server
// does not verify Java's certificate: Java is the peer under test.
func JavaClient(t testing.TB, java, server PKI, host string) error {
	t.Helper()
	requireJava(t)
	dir := t.TempDir()
	if err := writeJavaFiles(dir, java); err != nil {
		return err
	}
	cert, err := server.tlsCertificate()
	if err != nil {
		return err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if len(java.Cert) > 0 {
		// Make Java send its certificate; only its acceptance of ours is
		// checked here.
		cfg.ClientAuth = tls.RequireAnyClientCert
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	defer ln.Close()
	goErr := make(chan error, 1)
	go func() { goErr <- serveOnce(ln, cfg) }()

	port := ln.Addr().(*net.TCPAddr).Port
	out, err := runTool(t, dir, nil, "java", javaArgs("client", dir, host, itoa(port))...)
	ln.Close() // unblocks Accept if Java never connected
	serverErr := <-goErr
	if err != nil {
		return fmt.Errorf("%w-- go server: %v", err, serverErr)
	}
	if serverErr != nil {
		return fmt.Errorf("peers: go TLS server: %w\n-- java --\n%s", serverErr, out)
	}
	return nil
}

// serveOnce accepts one connection on ln, runs the server handshake and
// writes "K".
func serveOnce(ln net.Listener, cfg *tls.Config) error {
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(runTimeout)); err != nil {
		return err
	}
	tc := tls.Server(conn, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	if _, err := tc.Write([]byte("K")); err != nil {
		return err
	}
	// Wait for Java to close, so it reads the byte before the socket goes.
	_, _ = io.Copy(io.Discard, tc)
	return nil
}

// JavaServer proves that Java 17's JSSE, as a TLS server with
// need-client-auth, accepts the client certificate client.Cert (with
// client.Key) presented by a Go TLS client. Java presents java.Cert and
// java.Key, trusts java.CACert and checks revocation against java.CRL when
// set.
//
// It returns nil when Java completed the handshake, and otherwise an error
// holding Java's output (such as "PKIX path building failed"). The Go
// client always sends client.Cert, even when its issuer is not among the
// CAs Java lists, and does not verify Java's certificate: Java is the peer
// under test.
func JavaServer(t testing.TB, java, client PKI) error {
	t.Helper()
	requireJava(t)
	dir := t.TempDir()
	if err := writeJavaFiles(dir, java); err != nil {
		return err
	}
	cert, err := client.tlsCertificate()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "java", javaArgs("server", dir)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("peers: starting java: %v", err)
	}
	// The first line is "LISTENING <port>"; the rest is collected until
	// Java exits, which must happen before Wait.
	first := make(chan string, 1)
	rest := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		first <- line
		b, _ := io.ReadAll(r)
		rest <- string(b)
	}()
	line := <-first
	clientErr := errors.New("java did not listen")
	if p, ok := strings.CutPrefix(strings.TrimSpace(line), "LISTENING "); ok {
		if port, err := strconv.Atoi(p); err == nil {
			clientErr = dialJava(ctx, port, cert)
		}
	}
	more := <-rest
	waitErr := cmd.Wait()
	if waitErr != nil {
		return fmt.Errorf("peers: java as TLS server refused the handshake: %w\n%s%s%s-- go client: %v",
			waitErr, line, more, stderr.String(), clientErr)
	}
	if clientErr != nil {
		return fmt.Errorf("peers: go TLS client: %w\n-- java --\n%s%s", clientErr, line, more)
	}
	return nil
}

// dialJava connects to Java's TLS server, presents cert and reads the "K"
// Java writes after its side of the handshake.
func dialJava(ctx context.Context, port int, cert tls.Certificate) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", itoa(port)))
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(runTimeout)); err != nil {
		return err
	}
	tc := tls.Client(conn, &tls.Config{
		// Java is the peer under test; its certificate is not what this
		// check is about.
		InsecureSkipVerify: true, //nolint:gosec // test support, see above
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		return fmt.Errorf("reading after the handshake: %w", err)
	}
	return nil
}

// javaArgs returns the java command line running PeerTLS with args: the
// compiled class from the cache when there is one, else the source file,
// which writeJavaFiles puts in the working directory.
func javaArgs(args ...string) []string {
	prog := []string{"PeerTLS.java"}
	if dir, err := compiledPeerTLS(); err == nil {
		prog = []string{"-cp", dir, "PeerTLS"}
	}
	return append(append(slices.Clone(javaFlags), prog...), args...)
}

// compiledPeerTLS compiles PeerTLS.java once into the user's cache
// directory (…/kvmpki/peers/<hash of the source>), where later test
// processes find it. Compiling costs about 1.5 CPU-seconds, which the
// single-file source launcher would pay on every run. The compiler is the
// jdk.compiler module that the source launcher needs anyway.
var compiledPeerTLS = sync.OnceValues(func() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(peerTLSJava)
	root := filepath.Join(cache, "kvmpki", "peers")
	dir := filepath.Join(root, "PeerTLS-"+hex.EncodeToString(sum[:12]))
	if _, err := os.Stat(filepath.Join(dir, "PeerTLS.class")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(root, "tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	src := filepath.Join(tmp, "PeerTLS.java")
	if err := writeNew(src, peerTLSJava, 0o600); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	args := append(slices.Clone(javaFlags), "-m", "jdk.compiler/com.sun.tools.javac.Main",
		"--release", "17", "-d", tmp, src)
	if out, err := exec.CommandContext(ctx, "java", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("peers: compiling PeerTLS.java: %w\n%s", err, out)
	}
	// Another test process may have won the race; its copy is the same.
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "PeerTLS.class")); serr != nil {
			return "", err
		}
	}
	return dir, nil
})

// writeJavaFiles writes PeerTLS.java and the files it reads for p into dir:
// ca.pem, chain.pem and key.der (PKCS #8 DER, mode 0600) when p has a
// certificate, and crl.pem when p has a CRL.
func writeJavaFiles(dir string, p PKI) error {
	files := []fileSpec{
		{name: "PeerTLS.java", data: peerTLSJava},
		{name: "ca.pem", data: p.CACert},
	}
	if len(p.Cert) > 0 {
		if _, err := p.chain(); err != nil {
			return err
		}
		der, err := p.pkcs8Key()
		if err != nil {
			return err
		}
		defer clear(der)
		files = append(files, fileSpec{name: "chain.pem", data: p.Cert}, fileSpec{name: "key.der", data: der, secret: true})
	}
	if len(p.CRL) > 0 {
		files = append(files, fileSpec{name: "crl.pem", data: p.pemCRL()})
	}
	return writeFiles(dir, files...)
}

// KeytoolImportCA imports every certificate of caCert as a trusted entry
// into a new PKCS #12 truststore with `keytool -importcert -noprompt`, and
// lists the store. The store password travels in an environment variable
// (-storepass:env), never on the command line. It returns an error holding
// keytool's output if keytool refuses a certificate.
func KeytoolImportCA(t testing.TB, caCert []byte) error {
	t.Helper()
	Require(t, "keytool")
	dir := t.TempDir()
	pass := rand.Text()
	env := []string{"KVMPKI_STOREPASS=" + pass}
	store := filepath.Join(dir, "truststore.p12")
	rest := caCert
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		name := fmt.Sprintf("ca%d.pem", n)
		if err := writeFiles(dir, fileSpec{name: name, data: pemCert(b.Bytes)}); err != nil {
			t.Fatal(err)
		}
		if _, err := runTool(t, dir, env, "keytool", "-importcert", "-noprompt", "-trustcacerts",
			"-alias", fmt.Sprintf("ca%d", n), "-file", name,
			"-keystore", store, "-storetype", "PKCS12", "-storepass:env", "KVMPKI_STOREPASS"); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("peers: caCert holds no PEM certificate")
	}
	out, err := runTool(t, dir, env, "keytool", "-list", "-keystore", store,
		"-storetype", "PKCS12", "-storepass:env", "KVMPKI_STOREPASS")
	if err != nil {
		return err
	}
	if got := strings.Count(out, "trustedCertEntry"); got != n {
		return fmt.Errorf("peers: keytool lists %d trusted entries, want %d:\n%s", got, n, out)
	}
	_ = os.Remove(store)
	return nil
}
