package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeFlags: the contract flags are enough on a loopback address;
// elsewhere the proxy wants an HTTPS certificate or the explicit
// -insecure-http; usage errors exit with status 2.
func TestServeFlags(t *testing.T) {
	contract := []string{"-ca", "ca.pem", "-cert", "c.pem", "-key", "k.pem", "-token-key", "t.key"}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "contract on loopback", args: append([]string{"-listen", "127.0.0.1:8443"}, contract...)},
		{name: "contract on localhost", args: append([]string{"-listen", "localhost:8443"}, contract...)},
		{name: "https", args: append([]string{"-listen", ":8443", "-web-cert", "w.pem", "-web-key", "w.key"}, contract...)},
		{name: "explicit insecure http", args: append([]string{"-listen", ":8080", "-insecure-http"}, contract...)},
		{name: "plain http on all interfaces", args: append([]string{"-listen", ":8080"}, contract...), wantErr: "-web-cert and -web-key are required on a non-loopback -listen"},
		{name: "web cert without key", args: append([]string{"-listen", ":8443", "-web-cert", "w.pem"}, contract...), wantErr: "go together"},
		{name: "insecure with cert", args: append([]string{"-listen", ":8443", "-insecure-http", "-web-cert", "w.pem", "-web-key", "w.key"}, contract...), wantErr: "exclude each other"},
		{name: "missing token key", args: []string{"-listen", "127.0.0.1:1", "-ca", "a", "-cert", "b", "-key", "c"}, wantErr: "-token-key are required"},
		{name: "extra argument", args: append([]string{"-listen", "127.0.0.1:1", "extra"}, contract...), wantErr: `unexpected argument`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServeFlags(tc.args, new(bytes.Buffer))
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, errUsage)
			assert.ErrorContains(t, err, tc.wantErr)
			var stderr bytes.Buffer
			assert.Equal(t, 2, run(t.Context(), tc.args, nil, new(bytes.Buffer), &stderr))
			assert.True(t, strings.HasPrefix(stderr.String(), "consoleproxy: usage: "), stderr.String())
		})
	}
}

// TestMintTokenCommand: the platform's subcommand prints a token the
// proxy opens, with the password read from standard input.
func TestMintTokenCommand(t *testing.T) {
	dir := t.TempDir()
	secret := make([]byte, 32)
	rand.Read(secret)
	keyFile := filepath.Join(dir, "token.key")
	require.NoError(t, os.WriteFile(keyFile, secret, 0o600))
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"mint-token", "-token-key", keyFile, "-host", "10.0.0.5", "-port", "5901",
		"-server-name", "kvm1.example.org", "-password-file", "-", "-ttl", "30s"}, strings.NewReader("pw12345\n"), &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	k, err := NewTokens(secret)
	require.NoError(t, err)
	target, err := k.Open(strings.TrimSpace(stdout.String()), time.Now())
	require.NoError(t, err)
	assert.Equal(t, Target{Host: "10.0.0.5", Port: 5901, ServerName: "kvm1.example.org", Password: "pw12345"}, target)

	stdout.Reset()
	stderr.Reset()
	code = run(context.Background(), []string{"mint-token", "-token-key", keyFile, "-host", "h", "-port", "1", "-ttl", "1h"}, nil, &stdout, &stderr)
	assert.Equal(t, 1, code)
	assert.Equal(t, "consoleproxy: minting a token: lifetime 1h0m0s not in (0, 10m0s]\n", stderr.String())
	assert.Empty(t, stdout.String())
}

// TestServe runs the command with the contract flags on a loopback
// address (plain HTTP), and with an HTTPS certificate: it serves the page
// with its security headers and the noVNC bundle (revalidated by its
// hash), and stops cleanly when its context ends.
func TestServe(t *testing.T) {
	novncDir := requireNoVNC(t)
	f := newPKI(t)
	for _, https := range []bool{false, true} {
		t.Run(map[bool]string{false: "http on loopback", true: "https"}[https], func(t *testing.T) {
			testServe(t, f, novncDir, https)
		})
	}
}

func testServe(t *testing.T, f *pkiFixture, novncDir string, https bool) {
	dir := t.TempDir()
	secret := make([]byte, 32)
	rand.Read(secret)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"-listen", addr,
		"-ca", writeFile(t, dir, "ca.pem", f.caPEM, 0o644),
		"-cert", writeFile(t, dir, "proxy.pem", f.proxyPEM, 0o644),
		"-key", writeFile(t, dir, "proxy-key.pem", f.proxyKey, 0o600),
		"-token-key", writeFile(t, dir, "token.key", secret, 0o600),
		"-novnc", novncDir}
	client := http.DefaultClient
	base := "http://" + addr
	if https {
		certDER := f.webCert.Certificate[0]
		keyDER, err := x509.MarshalPKCS8PrivateKey(f.webCert.PrivateKey)
		require.NoError(t, err)
		args = append(args,
			"-web-cert", writeFile(t, dir, "web.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644),
			"-web-key", writeFile(t, dir, "web-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.roots}}}
		base = "https://" + addr
	}
	ctx, cancel := context.WithCancel(t.Context())
	// The proxy writes stderr until run returns; the test reads it after.
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, nil, new(bytes.Buffer), &stderr) }()

	var resp *http.Response
	require.Eventually(t, func() bool {
		resp, err = client.Get(base + "/console")
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "proxy did not serve")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), `<script src="/novnc.js" defer></script>`)
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'")
	assert.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))

	resp, err = client.Get(base + "/novnc.js")
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "window.NoVNC = ")
	etag := resp.Header.Get("ETag")
	require.NotEmpty(t, etag)
	req, _ := http.NewRequest("GET", base+"/novnc.js", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not stop")
	}
	assert.Contains(t, stderr.String(), "serving consoles")
	assert.Contains(t, stderr.String(), base+"/console#TOKEN")
}
