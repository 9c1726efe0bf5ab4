package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/examples/acmeplugin/internal/pebbletest"
	"github.com/kvmpki/kvmpki/provider"
)

// TestRun drives the command against Pebble: it creates the account key,
// issues one certificate, writes the chain and a 0600 key that form a TLS
// identity verifying against Pebble's chain, and never overwrites them.
func TestRun(t *testing.T) {
	pb := pebbletest.Start(t)
	dir := t.TempDir()
	chainFile := filepath.Join(dir, "chain.pem")
	require.NoError(t, os.WriteFile(chainFile, provider.EncodeCertificates(pb.Chain...), 0o644))
	trustFile := filepath.Join(dir, "pebble-tls-ca.pem")
	require.NoError(t, os.WriteFile(trustFile, pb.TrustPEM, 0o644))
	accountFile := filepath.Join(dir, "account.pem")
	out := filepath.Join(dir, "kvm1")
	args := []string{"-directory", pb.Directory, "-acme-ca", trustFile, "-ca-chain", chainFile,
		"-account-key", accountFile, "-dns", "kvm1.kvm.example.test", "-ip", "192.0.2.10", "-out", out}

	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), args, &stdout, &stderr), stderr.String())
	assert.Contains(t, stdout.String(), "issued serial")
	for name, mode := range map[string]fs.FileMode{accountFile: 0o600, out + ".key": 0o600, out + ".crt": 0o644} {
		fi, err := os.Stat(name)
		require.NoError(t, err)
		assert.Equal(t, mode, fi.Mode().Perm(), name)
	}
	pair, err := tls.LoadX509KeyPair(out+".crt", out+".key")
	require.NoError(t, err)
	require.Len(t, pair.Certificate, 2, "leaf and intermediate")
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(pb.Chain[1])
	inter.AddCert(pb.Chain[0])
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "kvm1.kvm.example.test",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.NoError(t, err)
	assert.Equal(t, "192.0.2.10", leaf.IPAddresses[0].String())

	err = run(t.Context(), args, &stdout, &stderr)
	assert.ErrorIs(t, err, fs.ErrExist, "a second run must not overwrite the key (the account key is reused)")
}

// TestRunUsage: missing or bad flags are usage errors, before any
// request to a CA.
func TestRunUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{name: "none", args: nil},
		{name: "noNames", args: []string{"-directory", "https://ca/dir", "-ca-chain", "c", "-account-key", "k", "-out", "o"}},
		{name: "badIP", args: []string{"-directory", "https://ca/dir", "-ca-chain", "c", "-account-key", "k", "-out", "o", "-ip", "10.0.0"}},
		{name: "unknownFlag", args: []string{"-serial", "1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tc.args, &stdout, &stderr)
			var ue usageError
			assert.True(t, errors.As(err, &ue), "want a usage error, got %v", err)
		})
	}
}
