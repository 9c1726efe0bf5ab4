package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
)

const testPassword = "correct horse battery staple"

func testEnv(name string) string {
	if name == PasswordEnv {
		return testPassword
	}
	return ""
}

// TestAdminCert: admin-cert writes the certificate with its chain, the key
// with mode 0600 and the CA bundle; the certificate has the client role
// only; a second run refuses to overwrite unless -force.
func TestAdminCert(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	prefix := filepath.Join(dir, "admin")
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"admin-cert", "-dir", caDir, "-out", prefix, "-name", "alice", "-validity", "48h"}, &out, &errOut, testEnv)
	require.NoError(t, err, errOut.String())

	fi, err := os.Stat(prefix + ".key")
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	fi, err = os.Stat(caDir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	pair, err := tls.LoadX509KeyPair(prefix+".crt", prefix+".key")
	require.NoError(t, err)
	leaf := pair.Leaf
	assert.Equal(t, "alice", leaf.Subject.CommonName)
	assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	assert.True(t, isAdministrator(leaf))
	assert.WithinDuration(t, time.Now().Add(48*time.Hour), leaf.NotAfter, 2*time.Hour)
	require.Len(t, pair.Certificate, 2, "the certificate and its chain")
	bundle, err := os.ReadFile(prefix + ".ca.crt")
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(bundle))
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.NoError(t, err)
	assert.Contains(t, out.String(), provider.FormatSerial(leaf.SerialNumber))
	assert.NotContains(t, out.String()+errOut.String(), "PRIVATE KEY")

	before, err := os.ReadFile(prefix + ".key")
	require.NoError(t, err)
	err = run(t.Context(), []string{"admin-cert", "-dir", caDir, "-out", prefix}, io.Discard, io.Discard, testEnv)
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrExist)
	after, err := os.ReadFile(prefix + ".key")
	require.NoError(t, err)
	assert.Equal(t, before, after, "the key is left alone")

	require.NoError(t, run(t.Context(), []string{"admin-cert", "-dir", caDir, "-out", prefix, "-force"}, io.Discard, io.Discard, testEnv))
	after, err = os.ReadFile(prefix + ".key")
	require.NoError(t, err)
	assert.NotEqual(t, before, after, "-force replaces it")
}

// TestAdminCertReplacesSymlink: a symbolic link planted at the key's path
// is replaced, never written through.
func TestAdminCertReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	require.NoError(t, os.WriteFile(target, []byte("untouched"), 0o644))
	prefix := filepath.Join(dir, "admin")
	require.NoError(t, os.Symlink(target, prefix+".key"))
	err := run(t.Context(), []string{"admin-cert", "-dir", filepath.Join(dir, "ca"), "-out", prefix, "-force"}, io.Discard, io.Discard, testEnv)
	require.NoError(t, err)
	b, err := os.ReadFile(target)
	require.NoError(t, err)
	assert.Equal(t, "untouched", string(b))
	fi, err := os.Lstat(prefix + ".key")
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular())
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

// TestUsageErrors: bad command lines are usage errors, before anything is
// opened.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  func(string) string
		want string
	}{
		{"no location", []string{"-api-listen", ":0", "-agent-listen", ":0"}, testEnv, "-dir or -db is required"},
		{"both locations", []string{"-dir", "x", "-db", "postgres://u@h/d", "-api-listen", ":0", "-agent-listen", ":0"}, testEnv, "exclude each other"},
		{"no listeners", []string{"-dir", "x"}, testEnv, "-api-listen and -agent-listen are required"},
		{"extra argument", []string{"-dir", "x", "-api-listen", ":0", "-agent-listen", ":0", "extra"}, testEnv, "unexpected argument"},
		{"bad flag", []string{"-nope"}, testEnv, "flag provided but not defined"},
		{"admin-cert without -out", []string{"admin-cert", "-dir", "x"}, testEnv, "-out is required"},
		{"admin-cert bad validity", []string{"admin-cert", "-dir", "x", "-out", "p", "-validity", "-1h"}, testEnv, "-validity must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := run(t.Context(), tc.args, io.Discard, io.Discard, tc.env)
			var ue *usageError
			require.ErrorAs(t, err, &ue)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	t.Run("no password", func(t *testing.T) {
		err := run(t.Context(), []string{"-dir", t.TempDir(), "-api-listen", "127.0.0.1:0", "-agent-listen", "127.0.0.1:0"},
			io.Discard, io.Discard, func(string) string { return "" })
		assert.ErrorContains(t, err, "no CA key password")
	})
	t.Run("bad settings", func(t *testing.T) {
		err := run(t.Context(), []string{"-dir", t.TempDir(), "-api-listen", "127.0.0.1:0", "-agent-listen", "127.0.0.1:0",
			"-background-interval", "10s"}, io.Discard, io.Discard, testEnv)
		var ue *usageError
		require.ErrorAs(t, err, &ue)
		assert.Contains(t, err.Error(), "background")
	})
}

// TestServeCommandLine runs the server as main does, on an SQLite CA it
// creates: it prints the listening line with the real addresses, answers
// an administrator from admin-cert, and stops cleanly when its context
// ends (SIGTERM).
func TestServeCommandLine(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout, stderr := &peers.Buffer{}, &peers.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-dir", caDir, "-api-listen", "127.0.0.1:0", "-agent-listen", "127.0.0.1:0",
			"-names", "mgmt.test", "-ips", "127.0.0.1", "-validity", "3m", "-alert-period", "150s", "-background-interval", "1m"},
			stdout, stderr, testEnv)
	}()
	var line listening
	require.Eventually(t, func() bool {
		s := stdout.String()
		return strings.HasSuffix(s, "\n") && json.Unmarshal([]byte(s), &line) == nil
	}, 30*time.Second, 20*time.Millisecond, "no listening line; stderr: %s", stderr.String())
	assert.Equal(t, "listening", line.Event)
	assert.NotContains(t, line.API, ":0")
	assert.NotContains(t, line.Agent, ":0")

	prefix := filepath.Join(dir, "admin")
	require.NoError(t, run(t.Context(), []string{"admin-cert", "-dir", caDir, "-out", prefix}, io.Discard, io.Discard, testEnv))
	pair, err := tls.LoadX509KeyPair(prefix+".crt", prefix+".key")
	require.NoError(t, err)
	bundle, err := os.ReadFile(prefix + ".ca.crt")
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(bundle))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	resp, err := c.Get("https://" + line.API + "/listCAProviders")
	require.NoError(t, err)
	status, body := decodeResponse(t, resp)
	assert.Equal(t, http.StatusOK, status, body)
	c.CloseIdleConnections()

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not stop")
	}
	logs := stderr.String()
	assert.Contains(t, logs, `"msg":"stopped"`)
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		assert.NoError(t, json.Unmarshal([]byte(l), &rec), "every log line is JSON: %q", l)
	}
}

// TestTwoServersOnePostgres starts two servers at once on one empty
// PostgreSQL database: one creates the CA, the other opens it, and both
// serve the same CA bundle.
func TestTwoServersOnePostgres(t *testing.T) {
	dbURL := peers.PostgresDatabase(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type srv struct {
		stdout, stderr *peers.Buffer
		done           chan error
	}
	var servers []*srv
	for range 2 {
		s := &srv{stdout: &peers.Buffer{}, stderr: &peers.Buffer{}, done: make(chan error, 1)}
		servers = append(servers, s)
		go func() {
			s.done <- run(ctx, []string{"-db", dbURL, "-api-listen", "127.0.0.1:0", "-agent-listen", "127.0.0.1:0",
				"-names", "mgmt.test", "-ips", "127.0.0.1"}, s.stdout, s.stderr, testEnv)
		}()
	}
	var bundles []string
	for _, s := range servers {
		var line listening
		require.Eventually(t, func() bool {
			select {
			case err := <-s.done:
				t.Fatalf("server stopped: %v\n%s", err, s.stderr.String())
			default:
			}
			out := s.stdout.String()
			return strings.HasSuffix(out, "\n") && json.Unmarshal([]byte(out), &line) == nil
		}, 60*time.Second, 20*time.Millisecond)
		// The bundle is what the client needs to verify the server, so
		// this one fetch does not verify; the server's certificate is
		// then checked against the bundle it served.
		resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}).Get("https://" + line.API + "/ca.pem")
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		pool := x509.NewCertPool()
		require.True(t, pool.AppendCertsFromPEM(b))
		_, err = resp.TLS.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: "mgmt.test"})
		require.NoError(t, err, "the server's certificate comes from the CA it serves")
		bundles = append(bundles, string(b))
	}
	assert.Equal(t, bundles[0], bundles[1], "one CA")
	created := 0
	for _, s := range servers {
		created += strings.Count(s.stderr.String(), `"msg":"created the CA"`)
	}
	assert.Equal(t, 1, created, "exactly one server created the CA")
	cancel()
	for _, s := range servers {
		assert.NoError(t, <-s.done)
	}
}
