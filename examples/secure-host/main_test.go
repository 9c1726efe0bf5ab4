package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/libvirtconf"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// agentDir writes a host's agent credentials into ROOT/etc/cloudstack/agent
// and returns that directory and the CA.
func agentDir(t *testing.T, root string) (string, *rootca.CA) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca, err := rootca.Create(t.Context(), rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: key}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ca.Close() })
	res, err := ca.Issue(t.Context(), &provider.IssueRequest{Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA,
		DNSNames: []string{"kvm1.example.org"}})
	require.NoError(t, err)
	bundle, err := provider.CABundle(t.Context(), ca)
	require.NoError(t, err)
	certPEM, err := res.ChainPEM()
	require.NoError(t, err)
	keyPEM, err := res.KeyPEM()
	require.NoError(t, err)
	dir := filepath.Join(root, "etc/cloudstack/agent")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	for name, data := range map[string][]byte{
		"cloud.ca.crt": bundle,
		"cloud.crt":    certPEM,
		"cloud.key":    keyPEM,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	return dir, ca
}

// hostRoot returns a root with Debian 12's stock libvirt configuration.
func hostRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc/libvirt"), 0o755))
	for _, name := range []string{"libvirtd.conf", "qemu.conf"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "libvirttls", "testdata", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(root, "etc/libvirt", name), b, 0o644))
	}
	return root
}

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestSecureHost(t *testing.T) {
	root := hostRoot(t)
	creds, ca := agentDir(t, root)
	crl, err := ca.SignCRL(t.Context())
	require.NoError(t, err)
	crlPath := filepath.Join(t.TempDir(), "ca.crl")
	require.NoError(t, os.WriteFile(crlPath, crl.Raw, 0o644))
	before, err := os.ReadFile(filepath.Join(root, "etc/libvirt/libvirtd.conf"))
	require.NoError(t, err)

	out, err := runCmd(t, "-creds", creds, "-root", root, "-crl", crlPath)
	require.NoError(t, err, out)
	assert.Contains(t, out, "+listen_tls = 1\n")
	assert.Contains(t, out, "+crl_file = \"/etc/pki/CA/cacrl.pem\"\n")
	assert.Contains(t, out, "+migrate_tls_x509_cert_dir = \"/etc/pki/qemu\"\n")
	assert.Contains(t, out, "dry run: nothing changed")
	after, err := os.ReadFile(filepath.Join(root, "etc/libvirt/libvirtd.conf"))
	require.NoError(t, err)
	assert.Equal(t, before, after, "a dry run writes nothing")
	assert.NoDirExists(t, filepath.Join(root, "etc/pki"))

	out, err = runCmd(t, "-creds", creds, "-root", root, "-crl", crlPath, "-apply", "-symlink", "-allow-dn", "CN=kvm*.example.org")
	require.NoError(t, err, out)
	assert.Contains(t, out, "applied ")
	assert.Contains(t, out, "host: secured")
	assert.Contains(t, out, "service action(s) listed above")

	conf, err := os.ReadFile(filepath.Join(root, "etc/libvirt/libvirtd.conf"))
	require.NoError(t, err)
	c, err := libvirtconf.Parse(conf)
	require.NoError(t, err)
	for key, want := range map[string]libvirtconf.Value{
		"ca_file":             libvirtconf.StringValue("/etc/pki/CA/cacert.pem"),
		"key_file":            libvirtconf.StringValue("/etc/pki/libvirt/private/serverkey.pem"),
		"tls_allowed_dn_list": libvirtconf.StringListValue("CN=kvm*.example.org"),
	} {
		got, ok := c.Get(key)
		assert.True(t, ok && got.Equal(want), "%s = %s", key, got)
	}
	// The links name the host path of the credentials, not the path under
	// the test's root.
	target, err := os.Readlink(filepath.Join(root, "etc/pki/libvirt/servercert.pem"))
	require.NoError(t, err)
	assert.Equal(t, "/etc/cloudstack/agent/cloud.crt", target)

	out, err = runCmd(t, "-creds", creds, "-root", root, "-crl", crlPath, "-apply", "-symlink", "-allow-dn", "CN=kvm*.example.org")
	require.NoError(t, err, out)
	assert.Contains(t, out, "no changes\n")
}

func TestSecureHostErrors(t *testing.T) {
	root := hostRoot(t)
	creds, _ := agentDir(t, root)
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{name: "no creds", args: []string{"-root", root}, msg: "-creds and -root are required"},
		{name: "no root", args: []string{"-creds", creds}, msg: "-creds and -root are required"},
		{name: "missing key", args: []string{"-creds", t.TempDir(), "-root", root}, msg: "credentials missing"},
		{name: "missing CRL", args: []string{"-creds", creds, "-root", root, "-crl", "/nonexistent.crl"}, msg: "no such file"},
		{name: "CRL not a CRL", args: []string{"-creds", creds, "-root", root, "-crl", filepath.Join(creds, "cloud.crt")}, msg: "CRL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCmd(t, tc.args...)
			require.Error(t, err, out)
			assert.Contains(t, err.Error()+out, tc.msg)
		})
	}
}
