package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"
)

func TestServe(t *testing.T) {
	dir := fixtureCA(t, "CN=serve test CA")
	out := t.TempDir()
	certFile, keyFile := filepath.Join(out, "agent.pem"), filepath.Join(out, "agent.key")
	mustRun(t, "issue", "-dir", dir, "-key-out", keyFile, "-role", "host", "-dns", "agent.example", "-out", certFile)
	caPEM := []byte(mustRun(t, "bundle", "-dir", dir))

	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr peers.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-dir", dir, "-listen", "127.0.0.1:0", "-agent-listen", "127.0.0.1:0", "-names", "ms1.example.org", "-ips", "127.0.0.1"},
			&stdout, &stderr, func(k string) string { return pwEnv[k] })
	}()
	var httpAddr, agentAddr string
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			require.NoError(t, err, "serve stopped: %s", stderr.String())
			require.Fail(t, "serve stopped")
		default:
		}
		for _, line := range strings.Split(stdout.String(), "\n") {
			if v, ok := strings.CutPrefix(line, "http "); ok {
				httpAddr = v
			}
			if v, ok := strings.CutPrefix(line, "agent "); ok {
				agentAddr = v
			}
		}
		return httpAddr != "" && agentAddr != ""
	}, 20*time.Second, 20*time.Millisecond, "serve did not start: %s", stderr.String())

	get := func(path string) ([]byte, *http.Response) {
		resp, err := http.Get("http://" + httpAddr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return body, resp
	}
	body, resp := get("/ca.pem")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, string(caPEM), string(body))
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	caCert := parseCertsPEM(t, caPEM)[0]
	body, resp = get("/crl")
	assert.Equal(t, "application/pkix-crl", resp.Header.Get("Content-Type"))
	crl, err := x509.ParseRevocationList(body)
	require.NoError(t, err)
	assert.NoError(t, crl.CheckSignatureFrom(caCert))

	agentCert := readCert(t, certFile)
	req, err := ocsp.CreateRequest(agentCert, caCert, nil)
	require.NoError(t, err)
	oresp, err := http.Post("http://"+httpAddr+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
	require.NoError(t, err)
	obody, _ := io.ReadAll(oresp.Body)
	oresp.Body.Close()
	status, err := ocsp.ParseResponseForCert(obody, agentCert, caCert)
	require.NoError(t, err)
	assert.Equal(t, ocsp.Good, status.Status)

	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	ping := func(certs []tls.Certificate) (string, error) {
		c, err := tls.Dial("tcp", agentAddr, &tls.Config{RootCAs: roots, ServerName: "ms1.example.org", Certificates: certs})
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return "", err
		}
		return bufio.NewReader(c).ReadString('\n')
	}
	line, err := ping([]tls.Certificate{pair})
	require.NoError(t, err)
	assert.Equal(t, "pong\n", line)
	_, err = ping(nil)
	assert.Error(t, err, "a client without a certificate is refused")
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "agent refused") }, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, stderr.String(), "no certificate")

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	assertNoSecrets(t, stdout.String(), stderr.String())
}
