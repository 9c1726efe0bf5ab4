package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/keystore"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// buildBinary builds the command in pkgDir into a temporary directory.
func buildBinary(t *testing.T, pkgDir, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = pkgDir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

type result struct {
	stdout, stderr string
	code           int
}

func runBinary(t *testing.T, bin string, stdin []byte, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

func newCA(t *testing.T) *rootca.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca, err := rootca.Create(context.Background(), rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: key}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ca.Close() })
	return ca
}

// TestSetupThenImportBinaries runs both commands as a host would: setup
// prints the CSR, the CA issues, import reads the certificate from a file
// and the CA bundle from standard input.
func TestSetupThenImportBinaries(t *testing.T) {
	setupBin := buildBinary(t, "../keystore-setup", "keystore-setup")
	importBin := buildBinary(t, ".", "keystore-cert-import")
	ca := newCA(t)
	dir := t.TempDir()
	props := filepath.Join(dir, "agent.properties")

	r := runBinary(t, setupBin, nil, "-dir", dir, "-properties", props, "-ip", "127.0.0.1", "-cn", "kvm1.example.org")
	require.Equal(t, 0, r.code, r.stderr)
	res, err := ca.Issue(context.Background(), &provider.IssueRequest{
		CSR: []byte(r.stdout), DNSNames: []string{"kvm1.example.org"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Role: provider.RoleHost,
	})
	require.NoError(t, err)
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: res.Certificate.Raw}), 0o644))
	bundle, err := provider.CABundle(context.Background(), ca)
	require.NoError(t, err)

	// A foreign CA bundle is refused and changes nothing.
	foreign := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newCA(t).Certificate().Raw})
	r = runBinary(t, importBin, foreign, "-dir", dir, "-properties", props, "-cert", certFile, "-ca", "-")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "does not chain to the CA bundle")
	_, err = os.Stat(filepath.Join(dir, keystore.CertFile))
	assert.True(t, os.IsNotExist(err))

	r = runBinary(t, importBin, bundle, "-dir", dir, "-properties", props, "-cert", certFile, "-ca", "-")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "imported: CN=kvm1.example.org")
	assert.Contains(t, r.stdout, "chain of 2, 1 trusted CA certificate(s)")
	assert.Contains(t, r.stdout, "secured: yes")

	for name, mode := range map[string]os.FileMode{keystore.KeyFile: 0o600, keystore.KeystoreFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, mode, fi.Mode().Perm(), name)
	}
	pw := passphrase(t, props)
	assert.NotContains(t, r.stdout+r.stderr, pw)
	ks, err := keystore.Load(context.Background(), filepath.Join(dir, keystore.KeystoreFile), []byte(pw))
	require.NoError(t, err)
	assert.Equal(t, []string{"cloud", "cloudca.1"}, ks.Aliases())
}

func passphrase(t *testing.T, props string) string {
	t.Helper()
	b, err := os.ReadFile(props)
	require.NoError(t, err)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "keystore.passphrase="); ok {
			return v
		}
	}
	t.Fatal("no passphrase")
	return ""
}

func TestKeystoreCertImportUsage(t *testing.T) {
	bin := buildBinary(t, ".", "keystore-cert-import")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no dir", []string{"-cert", "a", "-ca", "b"}, 2, "-dir is required"},
		{"no cert", []string{"-dir", t.TempDir(), "-ca", "b"}, 2, "-cert and -ca are required"},
		{"both from stdin", []string{"-dir", t.TempDir(), "-cert", "-", "-ca", "-"}, 2, "only one of -cert and -ca"},
		{"PEM as argument", []string{"-dir", t.TempDir(), "-cert", "-----BEGIN CERTIFICATE-----", "-ca", "-"}, 1, "no such file"},
		{"garbage certificate", []string{"-dir", t.TempDir(), "-cert", "-", "-ca", "/dev/null"}, 1, "no CERTIFICATE PEM block in the certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runBinary(t, bin, []byte("not a certificate"), tc.args...)
			assert.Equal(t, tc.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tc.want)
		})
	}
}
