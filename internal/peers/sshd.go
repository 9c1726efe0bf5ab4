package peers

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHD is a throwaway OpenSSH sshd on 127.0.0.1, started by [StartSSHD].
type SSHD struct {
	// Addr is the daemon's address, 127.0.0.1:PORT.
	Addr string
	// User is the account it lets in: the one running the test.
	User string
	// HostKey is the daemon's own host key (ed25519), made for this
	// daemon only: the system's /etc/ssh keys are never read.
	HostKey ssh.PublicKey
	// KnownHostsFile is a known_hosts file naming Addr with HostKey.
	KnownHostsFile string
	// ClientSigner is the key authorized_keys admits, and IdentityFile
	// the same key as an OpenSSH private key file (mode 0600).
	ClientSigner ssh.Signer
	IdentityFile string

	proc         *process
	commandsFile string
}

// recordCommand is the daemon's ForceCommand: OpenSSH 9.2 does not log
// the command a client asks to run, even at DEBUG3, so this script
// appends it, exactly as the client sent it, to a file, then runs it
// with sh.
const recordCommand = `#!/bin/sh
printf '%%s\n' "$SSH_ORIGINAL_COMMAND" >> %s
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
`

// sshdConfig is the daemon's whole configuration: key authentication only,
// for the test's user, no PAM, no forwarding, every command logged.
const sshdConfig = `ListenAddress 127.0.0.1:%d
HostKey %s
PidFile none
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers %s
UsePAM no
StrictModes no
LogLevel DEBUG3
PermitTTY no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitUserEnvironment no
MaxStartups 100
ForceCommand %s
`

// StartSSHD starts OpenSSH's sshd in the foreground (-D -e) as a child of
// the test, on a free loopback port, with a configuration, host key and
// authorized_keys of its own under t.TempDir; it never touches the
// system's sshd or its keys. It logs at DEBUG3 to [SSHD.Log] and records
// every command a client runs in [SSHD.Commands]. sshd must
// run as root to let a user in through privilege separation; it needs its
// privilege separation directory /run/sshd, which StartSSHD creates when
// it is missing (as the Debian service does).
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	Require(t, "sshd")
	bin, err := exec.LookPath("sshd")
	require.NoError(t, err)
	bin, err = filepath.Abs(bin) // sshd re-executes itself by absolute path
	require.NoError(t, err)
	if os.Geteuid() != 0 {
		unavailable(t, "sshd needs root to run a login session")
	}
	require.NoError(t, os.MkdirAll("/run/sshd", 0o755))
	u, err := user.Current()
	require.NoError(t, err)

	dir := t.TempDir()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	writeOpenSSHKey(t, hostKeyFile, hostPriv)
	hostSigner, err := ssh.NewSignerFromSigner(hostPriv)
	require.NoError(t, err)

	_, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	identity := filepath.Join(dir, "id_ed25519")
	writeOpenSSHKey(t, identity, clientPriv)
	clientSigner, err := ssh.NewSignerFromSigner(clientPriv)
	require.NoError(t, err)
	authorized := filepath.Join(dir, "authorized_keys")
	require.NoError(t, os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientSigner.PublicKey()), 0o600))

	commands := filepath.Join(dir, "commands.log")
	recorder := filepath.Join(dir, "record-command")
	require.NoError(t, os.WriteFile(recorder, fmt.Appendf(nil, recordCommand, shellQuote(commands)), 0o700))

	var lastErr error
	for range startAttempts {
		port, err := freePort(1024)
		require.NoError(t, err)
		config := filepath.Join(dir, "sshd_config")
		require.NoError(t, os.WriteFile(config, fmt.Appendf(nil, sshdConfig, port, hostKeyFile, authorized, u.Username, recorder), 0o600))
		proc, err := startProcess(t, dir, nil, bin, "-D", "-e", "-f", config)
		require.NoError(t, err)
		if lastErr = proc.waitListening(port); lastErr != nil {
			proc.stop()
			if strings.Contains(proc.output(), "Address already in use") {
				continue
			}
			t.Fatalf("%v\n%s", lastErr, proc.output())
		}
		s := &SSHD{
			Addr:           fmt.Sprintf("127.0.0.1:%d", port),
			User:           u.Username,
			HostKey:        hostSigner.PublicKey(),
			ClientSigner:   clientSigner,
			IdentityFile:   identity,
			KnownHostsFile: filepath.Join(dir, "known_hosts"),
			proc:           proc,
			commandsFile:   commands,
		}
		s.WriteKnownHosts(t, s.KnownHostsFile, s.HostKey)
		return s
	}
	t.Fatalf("peers: sshd: %v", lastErr)
	return nil
}

// WriteKnownHosts writes a known_hosts file naming the daemon's address
// with key: s.HostKey for the truth, another key to play a host whose key
// changed.
func (s *SSHD) WriteKnownHosts(t testing.TB, path string, key ssh.PublicKey) {
	t.Helper()
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, key) + "\n"
	require.NoError(t, os.WriteFile(path, []byte(line), 0o600))
}

// Log returns what sshd and its per-connection processes logged so far.
func (s *SSHD) Log() string { return s.proc.output() }

// Commands returns the commands clients ran so far, as they sent them,
// one after another: what a process listing on the host would show as
// the shell's arguments.
func (s *SSHD) Commands() string {
	b, err := os.ReadFile(s.commandsFile)
	if err != nil && !os.IsNotExist(err) {
		return "(commands unavailable: " + err.Error() + ")"
	}
	return string(b)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeOpenSSHKey writes key as an OpenSSH private key file, mode 0600.
func writeOpenSSHKey(t testing.TB, path string, key ed25519.PrivateKey) {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(key, "")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(block), 0o600))
}

// BuildCommands builds the main packages pkgs (import paths) with go
// build into a fresh directory and returns it: for a test that runs a
// module's own commands on an SSHD "host".
func BuildCommands(t testing.TB, pkgs ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, pkg := range pkgs {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, path.Base(pkg)), pkg).CombinedOutput()
		require.NoError(t, err, "go build %s: %s", pkg, out)
	}
	return dir
}

// ReadFiles returns the content of every regular file directly in dir,
// by name: what a test compares to prove a host's files did not change.
func ReadFiles(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if e.Type().IsRegular() {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			require.NoError(t, err)
			out[e.Name()] = b
		}
	}
	return out
}
