package ca_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/keystore"
	"github.com/kvmpki/kvmpki/provider"
)

// hostTools builds the host-side programs the SSH transport runs
// (examples/keystore-setup and examples/keystore-cert-import) into a
// fresh directory, the "remote" bin directory.
func hostTools(t *testing.T) string {
	return peers.BuildCommands(t, "github.com/kvmpki/kvmpki/examples/keystore-setup", "github.com/kvmpki/kvmpki/examples/keystore-cert-import")
}

// sshFixture is a loopback sshd, the host tools, and a keystore directory
// standing for the host's /etc/cloudstack/agent.
type sshFixture struct {
	sshd   *peers.SSHD
	bin    string
	keyDir string
}

func newSSHFixture(t *testing.T) *sshFixture {
	t.Helper()
	sshd := peers.StartSSHD(t)
	return &sshFixture{sshd: sshd, bin: hostTools(t), keyDir: t.TempDir()}
}

// config is an SSHConfig for the fixture; Reload touches a file.
func (f *sshFixture) config() *ca.SSHConfig {
	return &ca.SSHConfig{
		Addr:            f.sshd.Addr,
		User:            f.sshd.User,
		Signer:          f.sshd.ClientSigner,
		KnownHostsFiles: []string{f.sshd.KnownHostsFile},
		RemoteBinDir:    f.bin,
		RemoteDir:       f.keyDir,
		ReloadCommand:   "date > " + filepath.Join(f.keyDir, "reloaded"),
	}
}

func (f *sshFixture) host(t *testing.T, cfg *ca.SSHConfig) *ca.SSHHost {
	t.Helper()
	h, err := ca.NewSSHHost(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	return h
}

// secretsOf lists what must never appear in sshd's log: the keystore
// passphrase and the base64 of every key, certificate and CSR on the host,
// in the 40-character pieces a PEM body or an argument would show.
func secretsOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	props, err := keystore.LoadProperties(t.Context(), filepath.Join(dir, keystore.PropertiesFile))
	require.NoError(t, err)
	pass, ok := props.Lookup(keystore.PassphraseProperty)
	require.True(t, ok)
	require.NotEmpty(t, pass)
	out["keystore passphrase"] = string(pass)
	for _, name := range []string{"cloud.key", "cloud.crt", "cloud.ca.crt", "cloud.csr"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, name)
		for i := 0; ; i++ {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				break
			}
			enc := base64.StdEncoding.EncodeToString(b.Bytes)
			for j := 0; j+40 <= len(enc) && j < 400; j += 40 {
				out[fmt.Sprintf("%s block %d base64 at %d", name, i, j)] = enc[j : j+40]
			}
			out[fmt.Sprintf("%s block %d DER", name, i)] = string(b.Bytes[:32])
		}
	}
	ks, err := os.ReadFile(filepath.Join(dir, keystore.KeystoreFile))
	require.NoError(t, err)
	out["cloud.jks base64"] = base64.StdEncoding.EncodeToString(ks)[:40]
	return out
}

// TestSSHHostProvision provisions a host end to end over a real OpenSSH
// sshd with the real keystore-setup and keystore-cert-import, then
// checks sshd's DEBUG3 log, which records every command the client
// ran: no PEM, passphrase or key material ever was on a command line.
func TestSSHHostProvision(t *testing.T) {
	f := newSSHFixture(t)
	e := newEnv(t, nil)
	h := f.host(t, f.config())
	ip := net.ParseIP("192.0.2.10")
	res, err := e.m.Provision(t.Context(), &ca.ProvisionRequest{
		Name: "kvm1", Host: h, DNSNames: []string{"kvm1.example.org"}, IPAddresses: []net.IP{ip},
	})
	require.NoError(t, err)
	assert.True(t, res.Reloaded)
	assert.FileExists(t, filepath.Join(f.keyDir, "reloaded"))

	// The host's files: its certificate is the issued one, for its key,
	// chaining to the CA in cloud.ca.crt; the key is 0600.
	creds, err := keystore.CheckSecured(t.Context(), f.keyDir, nil)
	require.NoError(t, err)
	assert.Equal(t, res.Certificate.Raw, creds.Chain[0].Raw)
	assert.Equal(t, []string{"kvm1.example.org"}, res.Certificate.DNSNames)
	require.Len(t, res.Certificate.IPAddresses, 1)
	assert.True(t, res.Certificate.IPAddresses[0].Equal(ip))
	st, err := os.Stat(filepath.Join(f.keyDir, "cloud.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	caPEM, err := os.ReadFile(filepath.Join(f.keyDir, "cloud.ca.crt"))
	require.NoError(t, err)
	assert.Contains(t, string(caPEM), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.caCert.Raw})))
	agent, err := ca.LoadAgentCredentials(ca.AgentCredentialFiles{
		CertFile: filepath.Join(f.keyDir, "cloud.crt"), KeyFile: filepath.Join(f.keyDir, "cloud.key"), CAFile: filepath.Join(f.keyDir, "cloud.ca.crt"),
	})
	require.NoError(t, err)
	assert.Equal(t, res.Certificate.SerialNumber, agent.Certificate().SerialNumber)

	// sshd ran the three commands...
	commands := f.sshd.Commands()
	for _, want := range []string{"keystore-setup", "keystore-cert-import", "reloaded"} {
		assert.Contains(t, commands, want, "sshd recorded the commands")
	}
	// ...and none of them, nor anything in sshd's DEBUG3 log, carried a
	// secret or a PEM.
	log := waitLog(t, f.sshd, "Close session") + commands
	assert.NotContains(t, log, "BEGIN")
	assert.NotContains(t, log, "PRIVATE")
	for what, s := range secretsOf(t, f.keyDir) {
		assert.NotContains(t, log, s, "%s is in sshd's log", what)
	}

	// The witness works: a command that does carry key material shows
	// up in what sshd recorded.
	secrets := secretsOf(t, f.keyDir)
	cfg := f.config()
	cfg.ReloadCommand = "true " + secrets["cloud.crt block 0 base64 at 0"]
	require.NoError(t, f.host(t, cfg).Reload(t.Context()))
	assert.Contains(t, f.sshd.Commands(), secrets["cloud.crt block 0 base64 at 0"])
}

// waitLog waits until sshd's log holds want (its per-connection
// processes write asynchronously) and returns the log.
func waitLog(t *testing.T, s *peers.SSHD, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		log := s.Log()
		if strings.Contains(log, want) || time.Now().After(deadline) {
			return log
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSSHHostRefusesHostKey: a host whose key changed is refused during
// the key exchange, before authentication: sshd's log shows the
// connection closed in preauth, no accepted key, session or command; a
// host missing from known_hosts is refused before any connection.
func TestSSHHostRefusesHostKey(t *testing.T) {
	f := newSSHFixture(t)
	other, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	otherKey, err := ssh.NewPublicKey(other)
	require.NoError(t, err)

	t.Run("changed key", func(t *testing.T) {
		cfg := f.config()
		kh := filepath.Join(t.TempDir(), "known_hosts")
		f.sshd.WriteKnownHosts(t, kh, otherKey)
		cfg.KnownHostsFiles = []string{kh}
		h := f.host(t, cfg)
		before := len(f.sshd.Log())
		_, err := h.SetupKeystore(t.Context(), &ca.KeystoreSetup{DNSNames: []string{"kvm1.example.org"}})
		require.ErrorIs(t, err, ca.ErrHostKeyChanged)
		assert.Contains(t, err.Error(), ssh.FingerprintSHA256(f.sshd.HostKey))

		log := waitLog(t, f.sshd, "preauth")
		log = log[before:]
		assert.Contains(t, log, "[preauth]", "sshd saw the connection end before authentication")
		for _, never := range []string{"userauth-request", "Accepted publickey", "session_new", "req exec", "Starting session"} {
			assert.NotContains(t, log, never)
		}
		assert.Empty(t, f.sshd.Commands(), "no command ran")
		entries, err := os.ReadDir(f.keyDir)
		require.NoError(t, err)
		assert.Empty(t, entries, "nothing reached the host")
	})
	t.Run("unknown host", func(t *testing.T) {
		cfg := f.config()
		kh := filepath.Join(t.TempDir(), "known_hosts")
		require.NoError(t, os.WriteFile(kh, []byte("[192.0.2.1]:22 "+string(ssh.MarshalAuthorizedKey(otherKey))), 0o600))
		cfg.KnownHostsFiles = []string{kh}
		before := len(f.sshd.Log())
		_, err := ca.NewSSHHost(cfg)
		require.ErrorIs(t, err, ca.ErrUnknownHostKey)
		time.Sleep(100 * time.Millisecond)
		assert.NotContains(t, f.sshd.Log()[before:], "Connection from", "no connection was made")
	})
}

// TestSSHHostSetupFailureKeepsCredentials: a provisioned host whose
// keystore-setup then fails keeps its previous files byte for byte, and
// the error names the step, the exit status and keystore-setup's own
// message.
func TestSSHHostSetupFailureKeepsCredentials(t *testing.T) {
	f := newSSHFixture(t)
	e := newEnv(t, nil)
	h := f.host(t, f.config())
	req := &ca.ProvisionRequest{Name: "kvm1", Host: h, DNSNames: []string{"kvm1.example.org"}}
	_, err := e.m.Provision(t.Context(), req)
	require.NoError(t, err)

	tests := []struct {
		name    string
		prepare func(t *testing.T)
		setup   *ca.KeystoreSetup // nil: through Manager.Provision
		stderr  string
	}{
		{
			name:   "refused key size",
			setup:  &ca.KeystoreSetup{KeyAlgorithm: provider.KeyAlgorithmRSA, KeySize: 1000},
			stderr: "RSA-1000",
		},
		{
			// keystore-setup has a new key and keystore in hand when
			// the write of cloud.csr fails: the all-or-nothing write
			// must leave cloud.jks and agent.properties as they were.
			name: "write fails midway",
			prepare: func(t *testing.T) {
				csr := filepath.Join(f.keyDir, keystore.CSRFile)
				require.NoError(t, os.Remove(csr))
				require.NoError(t, os.MkdirAll(filepath.Join(csr, "in-the-way"), 0o700))
			},
			stderr: "keystore-setup:",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prepare != nil {
				tc.prepare(t)
			}
			before := peers.ReadFiles(t, f.keyDir)
			require.Contains(t, before, keystore.KeystoreFile)
			require.Contains(t, before, "cloud.key")
			if tc.setup != nil {
				_, err = h.SetupKeystore(t.Context(), tc.setup)
			} else {
				_, err = e.m.Provision(t.Context(), req)
				var pe *ca.ProvisionError
				require.ErrorAs(t, err, &pe)
				assert.Equal(t, ca.StepSetup, pe.Step)
			}
			var rce *ca.RemoteCommandError
			require.ErrorAs(t, err, &rce)
			assert.Equal(t, "keystore-setup", rce.Program)
			assert.Equal(t, 1, rce.ExitStatus)
			assert.Contains(t, rce.Stderr, tc.stderr)
			assert.Equal(t, before, peers.ReadFiles(t, f.keyDir), "the host's files are unchanged")
			_, err = keystore.CheckSecured(t.Context(), f.keyDir, nil)
			assert.NoError(t, err, "the host is still secured")
		})
	}
}

// TestSSHHostStepTimeout: a remote command still running at StepTimeout
// is reported with the context's error and its stderr within a second
// more (this sshd refuses the kill signal: its commands are forced ones,
// so the connection is hung up), and the next step dials again.
func TestSSHHostStepTimeout(t *testing.T) {
	f := newSSHFixture(t)
	cfg := f.config()
	stall := filepath.Join(f.keyDir, "stall")
	require.NoError(t, os.WriteFile(stall, nil, 0o600))
	cfg.ReloadCommand = "echo reloading >&2; if [ -e " + stall + " ]; then exec sleep 20; fi"
	cfg.StepTimeout = 3 * time.Second
	h := f.host(t, cfg)
	start := time.Now()
	err := h.Reload(context.Background())
	var rce *ca.RemoteCommandError
	require.ErrorAs(t, err, &rce)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, -1, rce.ExitStatus)
	assert.Contains(t, rce.Stderr, "reloading")
	assert.Less(t, time.Since(start), 10*time.Second)

	// The host is still usable: the next step dials again.
	require.NoError(t, os.Remove(stall))
	assert.NoError(t, h.Reload(t.Context()))
}

// TestSSHHostInstallRefusesWrongCertificate: keystore-cert-import
// refuses a certificate for another key, with its message in the error,
// and the host's files stay as they were.
func TestSSHHostInstallRefusesWrongCertificate(t *testing.T) {
	f := newSSHFixture(t)
	e := newEnv(t, nil)
	h := f.host(t, f.config())
	_, err := e.m.Provision(t.Context(), &ca.ProvisionRequest{Name: "kvm1", Host: h, DNSNames: []string{"kvm1.example.org"}})
	require.NoError(t, err)
	before := peers.ReadFiles(t, f.keyDir)

	other, _ := e.issue(t, provider.RoleHost, []string{"kvm2.example.org"}, nil)
	bundle, err := e.m.CABundle(t.Context())
	require.NoError(t, err)
	err = h.InstallCertificate(t.Context(), &ca.CertificateInstall{
		CertificatePEM: provider.EncodeCertificates(other.Certificate),
		CABundlePEM:    bundle,
	})
	var rce *ca.RemoteCommandError
	require.ErrorAs(t, err, &rce)
	assert.Equal(t, "keystore-cert-import", rce.Program)
	assert.Equal(t, 1, rce.ExitStatus)
	assert.Contains(t, rce.Stderr, "keystore-cert-import:")
	assert.Equal(t, before, peers.ReadFiles(t, f.keyDir))
}

// TestSSHHostInstallStream: the certificate chain and the CA bundle,
// sent as one stream on standard input, reach keystore-cert-import as two
// files, byte for byte, in a private directory (0700, files 0600) that is
// gone once the import returned. A stand-in keystore-cert-import records
// what it was given.
func TestSSHHostInstallStream(t *testing.T) {
	f := newSSHFixture(t)
	out := t.TempDir()
	fake := `#!/bin/sh
# -dir D -properties P -cert CERT -ca CA
[ "$5" = -cert ] && [ "$7" = -ca ] || { echo "unexpected arguments: $*" >&2; exit 2; }
stat -c '%a' "$(dirname "$6")" "$6" "$8" > ` + out + `/modes
printf '%s\n' "$(dirname "$6")" > ` + out + `/dir
cat "$6" > ` + out + `/cert
cat "$8" > ` + out + `/ca
`
	require.NoError(t, os.WriteFile(filepath.Join(f.bin, "keystore-cert-import"), []byte(fake), 0o700))
	e := newEnv(t, nil)
	leaf, _ := e.issue(t, provider.RoleHost, []string{"kvm1.example.org"}, nil)
	chain := provider.EncodeCertificates(leaf.Certificate, e.caCert)
	bundle := provider.EncodeCertificates(e.caCert, leaf.Certificate)
	tests := []struct {
		name          string
		chain, bundle []byte
	}{
		{"two and two", chain, bundle},
		{"no final newlines", bytes.TrimSuffix(chain, []byte("\n")), bytes.TrimSuffix(bundle, []byte("\n"))},
	}
	h := f.host(t, f.config())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, h.InstallCertificate(t.Context(), &ca.CertificateInstall{CertificatePEM: tc.chain, CABundlePEM: tc.bundle}))
			got := peers.ReadFiles(t, out)
			assert.Equal(t, "700\n600\n600\n", string(got["modes"]))
			assert.Equal(t, chain, got["cert"])
			assert.Equal(t, bundle, got["ca"])
			assert.NoDirExists(t, strings.TrimSpace(string(got["dir"])), "the private directory is removed")
		})
	}
}
