// Package pebbletest starts Let's Encrypt's test server Pebble (Debian
// package pebble) on loopback for the tests of examples/acmeplugin, with
// challenge validation stubbed.
package pebbletest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
)

// Server is a Pebble ACME test server running on loopback for one test.
type Server struct {
	// Directory is the ACME directory URL.
	Directory string
	// Client trusts the certificate of Pebble's HTTPS endpoints, which
	// the test minted.
	Client *http.Client
	// TrustPEM is that certificate's CA, for the command's -acme-ca flag.
	TrustPEM []byte
	// Chain is Pebble's issuing chain: intermediate, then root.
	Chain []*x509.Certificate

	mgmt string
	out  *peers.Buffer
}

// Start starts Pebble with challenge validation stubbed
// (PEBBLE_VA_ALWAYS_VALID), no validation delay and no deliberately
// rejected nonces, on free loopback ports, and stops it when t ends. It
// skips t when pebble is missing (failing it under KVMPKI_INTEROP=require).
func Start(t testing.TB) *Server {
	t.Helper()
	peers.Require(t, "pebble")
	bin, err := exec.LookPath("pebble")
	require.NoError(t, err)
	dir := t.TempDir()
	trust, certPEM, keyPEM := mintPebbleTLS(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o644))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))

	ports := freePorts(t, 4)
	listen := "127.0.0.1:" + strconv.Itoa(ports[0])
	mgmt := "127.0.0.1:" + strconv.Itoa(ports[1])
	cfg, err := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       ports[2],
		"tlsPort":                        ports[3],
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}})
	require.NoError(t, err)
	cfgFile := filepath.Join(dir, "pebble-config.json")
	require.NoError(t, os.WriteFile(cfgFile, cfg, 0o644))

	out := &peers.Buffer{}
	cmd := exec.Command(bin, "-config", cfgFile)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"PEBBLE_VA_ALWAYS_VALID=1",
		"PEBBLE_VA_NOSLEEP=1",
		"PEBBLE_WFE_NONCEREJECT=0",
	)
	cmd.Stdout, cmd.Stderr = out, out
	// The kernel kills Pebble if the test binary dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(trust)
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		Timeout:   30 * time.Second,
	}
	p := &Server{Directory: "https://" + listen + "/dir", Client: client, TrustPEM: trust, mgmt: mgmt, out: out}
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := client.Get(p.Directory)
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("pebble exited before serving its directory:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not serve %s within 15s (last error %v):\n%s", p.Directory, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Chain = []*x509.Certificate{p.management(t, "/intermediates/0"), p.management(t, "/roots/0")}
	return p
}

// management fetches one PEM certificate from Pebble's management port.
func (p *Server) management(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	res, err := p.Client.Get("https://" + p.mgmt + path)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, "GET %s: %s", path, body)
	block, _ := pem.Decode(body)
	require.NotNil(t, block, "GET %s: no PEM", path)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c
}

// Status asks Pebble's management port for the status of serial
// ("Valid", "Revoked"): the test's independent view of what the plugin
// did.
func (p *Server) Status(t testing.TB, serial *big.Int) string {
	t.Helper()
	res, err := p.Client.Get("https://" + p.mgmt + "/cert-status-by-serial/" + fmt.Sprintf("%x", serial))
	require.NoError(t, err)
	defer res.Body.Close()
	var st struct{ Status string }
	require.NoError(t, json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&st))
	return st.Status
}

// mintPebbleTLS returns a throwaway CA (PEM) and a certificate and key for
// 127.0.0.1 and localhost that it signed, for Pebble's HTTPS endpoints:
// Debian's pebble package ships no test certificates.
func mintPebbleTLS(t testing.TB) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "acmeplugin test Pebble TLS CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, key.Public(), caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// freePorts returns n loopback TCP ports the kernel just reported free.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		require.NoError(t, ln.Close())
	}
	return ports
}

// NewAccountKey returns a fresh ACME account key.
func NewAccountKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}
