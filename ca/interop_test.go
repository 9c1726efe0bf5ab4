package ca_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
)

// run runs a peer binary in dir with stdin and returns its combined
// output. Secrets travel in files (mode 0600), never as arguments.
func run(t testing.TB, dir string, stdin string, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeFile(t testing.TB, dir, name string, data []byte, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, perm))
	return p
}

// httpServer serves the three handlers as examples/kvmpki-ca serve does.
func (e *env) httpServer(t testing.TB) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/ca.pem", e.m.CABundleHandler())
	mux.Handle("/crl", e.m.CRLHandler())
	mux.Handle("/ocsp", e.ocspHandler(t))
	mux.Handle("/ocsp/", e.ocspHandler(t))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestInteropOpenSSLOCSP(t *testing.T) {
	peers.Require(t, "openssl")
	e := newEnv(t, nil)
	srv := e.httpServer(t)
	dir := t.TempDir()
	writeFile(t, dir, "ca.pem", provider.EncodeCertificates(e.caCert), 0o644)
	good, _ := e.issue(t, provider.RoleHost, []string{"good.example"}, nil)
	bad, _ := e.issue(t, provider.RoleHost, []string{"bad.example"}, nil)
	writeFile(t, dir, "good.pem", provider.EncodeCertificates(good.Certificate), 0o644)
	writeFile(t, dir, "bad.pem", provider.EncodeCertificates(bad.Certificate), 0o644)
	require.NoError(t, e.m.Revoke(context.Background(), &ca.RevokeRequest{Serial: bad.Certificate.SerialNumber.Text(16), Reason: provider.ReasonKeyCompromise}))

	tests := []struct {
		name   string
		target []string
		want   string
	}{
		{"good", []string{"-cert", "good.pem"}, "good.pem: good"},
		{"revoked", []string{"-cert", "bad.pem"}, "bad.pem: revoked"},
		{"unknown", []string{"-serial", "0x1234567"}, "0x1234567: unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"ocsp", "-issuer", "ca.pem", "-CAfile", "ca.pem", "-url", srv.URL + "/ocsp", "-no_nonce"}, tc.target...)
			out, err := run(t, dir, "", "openssl", args...)
			require.NoError(t, err, out)
			assert.Contains(t, out, "Response verify OK")
			assert.Contains(t, out, tc.want)
			if tc.name == "revoked" {
				assert.Contains(t, out, "Reason: keyCompromise")
				assert.Contains(t, out, "Revocation Time:")
			}
		})
	}
}

func TestInteropOpenSSLCRLAndCurl(t *testing.T) {
	peers.Require(t, "openssl", "curl")
	e := newEnv(t, nil)
	srv := e.httpServer(t)
	res, _ := e.issue(t, provider.RoleHost, []string{"h.example"}, nil)
	require.NoError(t, e.m.Revoke(context.Background(), &ca.RevokeRequest{Serial: res.Certificate.SerialNumber.Text(16)}))
	dir := t.TempDir()

	out, err := run(t, dir, "", "curl", "-sS", "-o", "crl.der", "-D", "headers.txt", srv.URL+"/crl")
	require.NoError(t, err, out)
	crlDER, err := os.ReadFile(filepath.Join(dir, "crl.der"))
	require.NoError(t, err)
	assert.NoError(t, peers.OpenSSLVerifyCRL(t, provider.EncodeCertificates(e.caCert), crlDER), "openssl crl -verify accepts the served CRL")
	out, err = run(t, dir, "", "curl", "-sS", "-o", "crl.pem", srv.URL+"/crl?format=pem")
	require.NoError(t, err, out)
	crlPEM, _ := os.ReadFile(filepath.Join(dir, "crl.pem"))
	assert.NoError(t, peers.OpenSSLVerifyCRL(t, provider.EncodeCertificates(e.caCert), crlPEM))
	writeFile(t, dir, "ca.pem", provider.EncodeCertificates(e.caCert), 0o644)
	out, err = run(t, dir, "", "openssl", "crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "ca.pem", "-noout", "-text")
	require.NoError(t, err, out)
	// OpenSSL prints the serial's bytes, so a serial whose first hex
	// digit is 0 keeps it: format the bytes, not the number.
	assert.Contains(t, strings.ToUpper(out), fmt.Sprintf("SERIAL NUMBER: %X", res.Certificate.SerialNumber.Bytes()))

	hdr, err := os.ReadFile(filepath.Join(dir, "headers.txt"))
	require.NoError(t, err)
	h := string(hdr)
	assert.Contains(t, h, "Content-Type: application/pkix-crl")
	assert.Contains(t, h, "Cache-Control: public, max-age=")
	assert.Contains(t, h, "Last-Modified: ")
	assert.Contains(t, h, "Expires: ")
	var etag string
	for _, line := range strings.Split(h, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Etag: "); ok {
			etag = v
		}
	}
	require.NotEmpty(t, etag, h)
	out, err = run(t, dir, "", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "If-None-Match: "+etag, srv.URL+"/crl")
	require.NoError(t, err, out)
	assert.Equal(t, "304", out)
	out, err = run(t, dir, "", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", srv.URL+"/ca.pem")
	require.NoError(t, err, out)
	assert.Equal(t, "200", out)
}

// s_client against the strict and relaxed agent port.
func TestInteropOpenSSLSClient(t *testing.T) {
	peers.Require(t, "openssl")
	e := newEnv(t, nil)
	id := e.identity(t)
	res, _ := e.issue(t, provider.RoleHost, []string{"agent.example"}, nil)
	dir := t.TempDir()
	writeFile(t, dir, "ca.pem", provider.EncodeCertificates(e.caCert), 0o644)
	chain, err := res.ChainPEM()
	require.NoError(t, err)
	key, err := res.KeyPEM()
	require.NoError(t, err)
	writeFile(t, dir, "cert.pem", chain, 0o644)
	writeFile(t, dir, "key.pem", key, 0o600)

	tests := []struct {
		name    string
		relaxed bool
		cert    bool
		ok      bool
	}{
		{"strict with cert", false, true, true},
		{"strict without cert", false, false, false},
		{"relaxed with cert", true, true, true},
		{"relaxed without cert", true, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var log refusalLog
			s := e.serveAgentsMode(t, &ca.AgentServerConfig{Identity: id, InsecureAllowMissingClientCert: tc.relaxed, OnRefusal: log.add}, true)
			args := []string{"s_client", "-connect", s.addr, "-CAfile", "ca.pem", "-verify_return_error", "-verify_ip", "127.0.0.1", "-quiet"}
			if tc.cert {
				args = append(args, "-cert", "cert.pem", "-key", "key.pem")
			}
			out, _ := run(t, dir, "ping\n", "openssl", args...)
			if tc.ok {
				assert.Contains(t, out, "pong", out)
			} else {
				assert.NotContains(t, out, "pong", out)
				require.NotEmpty(t, log.all())
				assert.ErrorIs(t, log.all()[0].Err, ca.ErrNoCertificate)
			}
			if tc.relaxed && !tc.cert {
				require.Len(t, log.all(), 1)
				assert.True(t, log.all()[0].Waived, "the waived refusal is reported")
			}
		})
	}
}
