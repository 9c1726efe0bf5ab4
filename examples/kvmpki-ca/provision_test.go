package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/keystore"
)

// TestProvision provisions a host over a real OpenSSH sshd with the real
// keystore-setup and keystore-cert-import: the host ends up secured with
// the certificate the CA lists, and no password, PEM or key material was
// on any command line sshd ran. A host whose key changed is refused with
// nothing sent.
func TestProvision(t *testing.T) {
	sshd := peers.StartSSHD(t)
	bin := peers.BuildCommands(t, "github.com/kvmpki/kvmpki/examples/keystore-setup", "github.com/kvmpki/kvmpki/examples/keystore-cert-import")
	dir := fixtureCA(t, "CN=provision test CA")
	hostDir := t.TempDir()
	args := func(extra ...string) []string {
		return append([]string{"provision", "-dir", dir, "-ssh", sshd.User + "@" + sshd.Addr,
			"-identity", sshd.IdentityFile, "-known-hosts", sshd.KnownHostsFile, "-remote-bin", bin,
			"-remote-dir", hostDir, "-names", "kvm1.example.org", "-ips", "192.0.2.10"}, extra...)
	}

	out := mustRun(t, args("-reload-command", "date > "+filepath.Join(hostDir, "reloaded"))...)
	assert.Contains(t, out, "provisioned kvm1.example.org: serial ")
	assert.FileExists(t, filepath.Join(hostDir, "reloaded"))
	creds, err := keystore.CheckSecured(t.Context(), hostDir, nil)
	require.NoError(t, err)
	leaf := creds.Chain[0]
	assert.Equal(t, []string{"kvm1.example.org"}, leaf.DNSNames)
	assert.Equal(t, []string{"192.0.2.10"}, ipStrings(leaf.IPAddresses))
	assert.Contains(t, list(t, dir), hexOf(leaf.SerialNumber), "the CA's inventory holds the host's certificate")

	// Nothing secret or PEM on a command line, nor in sshd's log.
	props, err := keystore.LoadProperties(t.Context(), filepath.Join(hostDir, keystore.PropertiesFile))
	require.NoError(t, err)
	pass, _ := props.Lookup(keystore.PassphraseProperty)
	require.NotEmpty(t, pass)
	seen := sshd.Commands() + sshd.Log()
	assert.Contains(t, sshd.Commands(), "keystore-cert-import")
	for _, never := range []string{"BEGIN", string(pass), testPassword} {
		assert.NotContains(t, seen, never)
	}

	t.Run("host key changed", func(t *testing.T) {
		other, _, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		otherKey, err := ssh.NewPublicKey(other)
		require.NoError(t, err)
		kh := filepath.Join(t.TempDir(), "known_hosts")
		sshd.WriteKnownHosts(t, kh, otherKey)
		before := peers.ReadFiles(t, hostDir)
		ran := sshd.Commands()
		a := args()
		for i := range a {
			if a[i] == sshd.KnownHostsFile {
				a[i] = kh
			}
		}
		r := runCLI(t, pwEnv, a...)
		require.Error(t, r.err)
		assert.Contains(t, r.err.Error(), "host key changed")
		assert.Equal(t, ran, sshd.Commands(), "no command ran")
		assert.Equal(t, before, peers.ReadFiles(t, hostDir))
	})
	t.Run("reload fails", func(t *testing.T) {
		r := runCLI(t, pwEnv, args("-reload-command", "echo no libvirtd here >&2; exit 3")...)
		require.Error(t, r.err)
		assert.Contains(t, r.stdout, "provisioned kvm1.example.org")
		assert.Contains(t, r.stderr, "were not reloaded")
		assert.Contains(t, r.err.Error(), "no libvirtd here")
		_, err := keystore.CheckSecured(t.Context(), hostDir, nil)
		assert.NoError(t, err, "the new certificate is installed")
	})
}

// TestProvisionUsage: bad command lines are usage errors (exit 2) and
// an identity file others can read is refused, before any connection.
func TestProvisionUsage(t *testing.T) {
	dir := fixtureCA(t, "CN=provision usage CA")
	key := filepath.Join(t.TempDir(), "id")
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(key, pem.EncodeToMemory(block), 0o644))
	kh := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(kh, nil, 0o600))
	base := []string{"provision", "-dir", dir, "-identity", key, "-known-hosts", kh, "-remote-bin", "/opt/bin"}
	tests := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"no -ssh", base, true, "-ssh, -identity, -known-hosts and -remote-bin are required"},
		{"no user", append(base, "-ssh", "127.0.0.1:22"), true, "is not USER@HOST:PORT"},
		{"bad ip", append(base, "-ssh", "root@127.0.0.1:22", "-ips", "nope"), true, `-ips: "nope" is not an IP address`},
		{"identity readable by others", append(base, "-ssh", "root@127.0.0.1:22"), false, "is readable by others"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, pwEnv, tc.args...)
			require.Error(t, r.err)
			assert.Equal(t, tc.usage, isUsage(r.err))
			assert.Contains(t, r.err.Error(), tc.want)
		})
	}
	t.Run("unknown host", func(t *testing.T) {
		require.NoError(t, os.Chmod(key, 0o600))
		r := runCLI(t, pwEnv, append(base, "-ssh", "root@127.0.0.1:22")...)
		require.Error(t, r.err)
		assert.Contains(t, r.err.Error(), "host key unknown")
		assert.False(t, strings.Contains(r.stdout, "provisioned"))
	})
}
