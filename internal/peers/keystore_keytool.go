package peers

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// storePassEnv is the environment variable that carries keystore
// passwords to keytool (-storepass:env) and to KeystoreTLS.java, so that
// no password appears on a command line.
const storePassEnv = "KVMPKI_STOREPASS"

// keytool runs keytool with args, with the JVM flags that make a short
// run start fast.
func keytool(t testing.TB, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	jvm := make([]string, 0, len(javaFlags)+len(args))
	for _, f := range javaFlags {
		jvm = append(jvm, "-J"+f)
	}
	return runTool(t, dir, env, "keytool", append(jvm, args...)...)
}

// KeytoolList runs `keytool -list -v` on the keystore bytes store (any
// type keytool detects) with password, and returns keytool's output
// ("Keystore type: PKCS12", "Alias name: cloud", "Entry type:
// PrivateKeyEntry", "Certificate chain length: 2", ...). An error holds
// keytool's output, e.g. "Keystore was tampered with, or password was
// incorrect".
func KeytoolList(t testing.TB, store, password []byte) (string, error) {
	t.Helper()
	Require(t, "keytool")
	dir := t.TempDir()
	if err := writeFiles(dir, fileSpec{name: "store", data: store, secret: true}); err != nil {
		t.Fatal(err)
	}
	return keytool(t, dir, []string{storePassEnv + "=" + string(password)},
		"-list", "-v", "-keystore", "store", "-storepass:env", storePassEnv)
}

// KeytoolStoreOptions describes a keystore for KeytoolGenKeyPair.
type KeytoolStoreOptions struct {
	// StoreType is passed as -storetype when set ("JKS", "PKCS12"); empty
	// means keytool's default, PKCS12 since JDK 9.
	StoreType string
	// Alias is the key entry's alias.
	Alias string
	// KeyAlg is "EC" (P-256) or "RSA" (2048 bits).
	KeyAlg string
	// Trusted are PEM certificates imported as trusted entries with
	// -importcert -trustcacerts, aliases TrustedAliases[i].
	Trusted        [][]byte
	TrustedAliases []string
}

// KeytoolGenKeyPair makes a keystore with keytool itself: -genkeypair
// (self-signed key entry), then one -importcert per trusted certificate.
// It returns the keystore's bytes.
func KeytoolGenKeyPair(t testing.TB, password []byte, o KeytoolStoreOptions) ([]byte, error) {
	t.Helper()
	Require(t, "keytool")
	dir := t.TempDir()
	env := []string{storePassEnv + "=" + string(password)}
	common := []string{"-keystore", "store", "-storepass:env", storePassEnv}
	if o.StoreType != "" {
		common = append(common, "-storetype", o.StoreType)
	}
	gen := []string{"-genkeypair", "-alias", o.Alias, "-dname", "CN=keytool-made", "-validity", "30",
		"-keypass:env", storePassEnv}
	switch o.KeyAlg {
	case "RSA":
		gen = append(gen, "-keyalg", "RSA", "-keysize", "2048")
	default:
		gen = append(gen, "-keyalg", "EC", "-groupname", "secp256r1")
	}
	if _, err := keytool(t, dir, env, append(gen, common...)...); err != nil {
		return nil, err
	}
	if len(o.Trusted) != len(o.TrustedAliases) {
		return nil, errors.New("peers: Trusted and TrustedAliases differ in length")
	}
	for i, pemCert := range o.Trusted {
		name := fmt.Sprintf("trusted%d.pem", i)
		if err := writeFiles(dir, fileSpec{name: name, data: pemCert}); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"-importcert", "-noprompt", "-trustcacerts", "-alias", o.TrustedAliases[i], "-file", name}, common...)
		if _, err := keytool(t, dir, env, args...); err != nil {
			return nil, err
		}
	}
	return os.ReadFile(filepath.Join(dir, "store"))
}

// KeytoolConvert converts a keystore with `keytool -importkeystore` to
// destType ("JKS" or "PKCS12"), keeping the password, and returns the new
// store's bytes.
func KeytoolConvert(t testing.TB, store, password []byte, destType string) ([]byte, error) {
	t.Helper()
	Require(t, "keytool")
	dir := t.TempDir()
	if err := writeFiles(dir, fileSpec{name: "src", data: store, secret: true}); err != nil {
		t.Fatal(err)
	}
	env := []string{storePassEnv + "=" + string(password)}
	if _, err := keytool(t, dir, env, "-importkeystore", "-noprompt",
		"-srckeystore", "src", "-srcstorepass:env", storePassEnv,
		"-destkeystore", "dst", "-deststoretype", destType, "-deststorepass:env", storePassEnv); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(dir, "dst"))
}

// keystoreTLSJava is a Java TLS client that loads its key material from
// a keystore file and its trust anchors from a truststore file, of any
// type Java detects (KeyStore.getInstance(File, char[])), the way a
// CloudStack agent loads cloud.jks.
const keystoreTLSJava = `import java.io.File;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.security.KeyStore;
import java.util.Collections;
import javax.net.ssl.*;

public class KeystoreTLS {
    public static void main(String[] a) {
        try {
            char[] pw = System.getenv("` + storePassEnv + `").toCharArray();
            KeyStore ks = KeyStore.getInstance(new File(a[0]), pw);
            KeyStore ts = KeyStore.getInstance(new File(a[1]), pw);
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pw);
            TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
            tmf.init(ts);
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
            int port = Integer.parseInt(a[3]);
            Socket raw = new Socket();
            raw.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 30000);
            try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(raw, a[2], port, true)) {
                s.setSoTimeout(30000);
                SSLParameters p = s.getSSLParameters();
                p.setEndpointIdentificationAlgorithm("HTTPS");
                s.setSSLParameters(p);
                s.startHandshake();
                if (s.getInputStream().read() != 'K') {
                    throw new IllegalStateException("server closed after the handshake");
                }
                System.out.println("OK " + s.getSession().getProtocol() + " keystore=" + ks.getType()
                        + " aliases=" + Collections.list(ks.aliases()));
            }
        } catch (Exception e) {
            System.err.println("KeystoreTLS: failed:");
            for (Throwable c = e; c != null; c = c.getCause()) {
                System.err.println("  " + c);
            }
            System.exit(1);
        }
    }
}
`

// JavaKeystoreClient proves that a Java 17 TLS client whose key material
// and trust anchors come from keystore files (keystore and truststore,
// which may be the same bytes) completes mutual TLS with a Go server.
// The Go server presents server.Cert and server.Key and requires a client
// certificate that verifies to server.CACert; Java identifies the server
// as host. It returns Java's output ("OK TLSv1.3 keystore=PKCS12
// aliases=[...]") or an error holding it.
func JavaKeystoreClient(t testing.TB, keystore, truststore, password []byte, server PKI, host string) (string, error) {
	t.Helper()
	requireJava(t)
	dir := t.TempDir()
	if err := writeFiles(dir,
		fileSpec{name: "KeystoreTLS.java", data: []byte(keystoreTLSJava)},
		fileSpec{name: "keystore", data: keystore, secret: true},
		fileSpec{name: "truststore", data: truststore, secret: true},
	); err != nil {
		t.Fatal(err)
	}
	cert, err := server.tlsCertificate()
	if err != nil {
		return "", err
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(server.CACert) {
		return "", errors.New("peers: server.CACert holds no PEM certificate")
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		MinVersion:   tls.VersionTLS12,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	defer ln.Close()
	goErr := make(chan error, 1)
	go func() { goErr <- serveOnce(ln, cfg) }()
	port := ln.Addr().(*net.TCPAddr).Port
	env := []string{storePassEnv + "=" + string(password)}
	args := append(append([]string{}, javaFlags...), "KeystoreTLS.java", "keystore", "truststore", host, itoa(port))
	out, err := runTool(t, dir, env, "java", args...)
	ln.Close()
	serverErr := <-goErr
	if err != nil {
		return out, fmt.Errorf("%w-- go server: %v", err, serverErr)
	}
	if serverErr != nil {
		return out, fmt.Errorf("peers: go TLS server: %w\n-- java --\n%s", serverErr, out)
	}
	if !strings.Contains(out, "OK ") {
		return out, fmt.Errorf("peers: java did not report OK:\n%s", out)
	}
	return out, nil
}
