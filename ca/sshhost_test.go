package ca_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

// TestNewSSHHostConfig: NewSSHHost refuses a configuration that lacks
// what it needs or asks for relative remote paths, and refuses a host
// with no known_hosts entry before connecting; the zero values it fills
// in are the documented ones.
func TestNewSSHHostConfig(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromSigner(priv)
	require.NoError(t, err)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize("kvm1.example.org")}, signer.PublicKey())+"\n"), 0o600))
	good := func() *ca.SSHConfig {
		return &ca.SSHConfig{Addr: "kvm1.example.org", User: "root", Signer: signer, KnownHostsFiles: []string{kh}, RemoteBinDir: "/usr/local/bin"}
	}
	tests := []struct {
		name    string
		edit    func(c *ca.SSHConfig)
		wantErr string
		is      error
	}{
		{name: "good, port 22 implied", edit: func(c *ca.SSHConfig) {}},
		{name: "good, explicit port", edit: func(c *ca.SSHConfig) { c.Addr = "kvm1.example.org:22" }},
		{name: "no user", edit: func(c *ca.SSHConfig) { c.User = "" }, wantErr: "needs Addr, User and Signer"},
		{name: "no signer", edit: func(c *ca.SSHConfig) { c.Signer = nil }, wantErr: "needs Addr, User and Signer"},
		{name: "no known hosts", edit: func(c *ca.SSHConfig) { c.KnownHostsFiles = nil }, wantErr: "needs KnownHostsFiles"},
		{name: "missing known hosts file", edit: func(c *ca.SSHConfig) { c.KnownHostsFiles = []string{kh + ".nope"} }, wantErr: "reading known_hosts"},
		{name: "host not in known hosts", edit: func(c *ca.SSHConfig) { c.Addr = "kvm2.example.org" }, is: ca.ErrUnknownHostKey},
		{name: "other port not in known hosts", edit: func(c *ca.SSHConfig) { c.Addr = "kvm1.example.org:2222" }, is: ca.ErrUnknownHostKey},
		{name: "insecure needs no known hosts", edit: func(c *ca.SSHConfig) { c.KnownHostsFiles = nil; c.InsecureIgnoreHostKey = true }},
		{name: "relative bin dir", edit: func(c *ca.SSHConfig) { c.RemoteBinDir = "bin" }, wantErr: "RemoteBinDir must be an absolute path"},
		{name: "no bin dir", edit: func(c *ca.SSHConfig) { c.RemoteBinDir = "" }, wantErr: "RemoteBinDir must be an absolute path"},
		{name: "relative keystore dir", edit: func(c *ca.SSHConfig) { c.RemoteDir = "agent" }, wantErr: "RemoteDir must be an absolute path"},
		{name: "relative properties", edit: func(c *ca.SSHConfig) { c.PropertiesFile = "agent.properties" }, wantErr: "PropertiesFile must be an absolute path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.edit(cfg)
			h, err := ca.NewSSHHost(cfg)
			switch {
			case tc.is != nil:
				assert.ErrorIs(t, err, tc.is)
			case tc.wantErr != "":
				assert.ErrorContains(t, err, tc.wantErr)
			default:
				require.NoError(t, err)
				assert.NoError(t, h.Close())
				assert.NoError(t, h.Close(), "Close twice")
			}
		})
	}
	_, err = ca.NewSSHHost(nil)
	assert.Error(t, err)
}

// TestSSHHostRefusesBeforeConnecting: requests the host programs cannot
// serve are refused before any connection (the address is one nothing
// listens on, so a dial would fail differently).
func TestSSHHostRefusesBeforeConnecting(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromSigner(priv)
	require.NoError(t, err)
	h, err := ca.NewSSHHost(&ca.SSHConfig{Addr: "192.0.2.1:22", User: "root", Signer: signer, InsecureIgnoreHostKey: true, RemoteBinDir: "/opt/kvmpki/bin"})
	require.NoError(t, err)
	defer h.Close()
	pem := []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	tests := []struct {
		name    string
		run     func() error
		wantErr string
	}{
		{"ECDSA P-384", func() error {
			_, err := h.SetupKeystore(t.Context(), &ca.KeystoreSetup{KeyAlgorithm: provider.KeyAlgorithmECDSA, KeySize: 384})
			return err
		}, "P-256 keys only"},
		{"no certificate", func() error {
			return h.InstallCertificate(t.Context(), &ca.CertificateInstall{CABundlePEM: pem})
		}, "needs CertificatePEM and CABundlePEM"},
		{"marker in the bundle", func() error {
			return h.InstallCertificate(t.Context(), &ca.CertificateInstall{CertificatePEM: pem, CABundlePEM: append(pem, "-----KVMPKI CA BUNDLE-----\n"...)})
		}, "marker"},
		{"oversized", func() error {
			return h.InstallCertificate(t.Context(), &ca.CertificateInstall{CertificatePEM: make([]byte, 1<<20), CABundlePEM: pem})
		}, "over 1048576 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorContains(t, tc.run(), tc.wantErr)
		})
	}
}
