package ca

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kvmpki/kvmpki/provider"
)

// ErrUnknownHostKey is wrapped by the error of an [SSHHost] whose host is
// not in its known_hosts files: nothing was sent to it.
var ErrUnknownHostKey = errors.New("ca: ssh: host key unknown")

// ErrHostKeyChanged is wrapped by the error of an [SSHHost] whose host
// presented a key other than the one its known_hosts files hold (a
// reinstalled host, or a man in the middle): the connection was closed
// during the key exchange, before authentication, so nothing was sent.
var ErrHostKeyChanged = errors.New("ca: ssh: host key changed")

// SSHConfig says how an [SSHHost] reaches a host and where the host keeps
// its programs and credentials. It is read once, by [NewSSHHost].
type SSHConfig struct {
	// Addr is the host's SSH address, host:port; without a port, 22.
	// Required.
	Addr string
	// User is the remote user. Required. It must be able to write the
	// keystore directory (root, or a user with Sudo).
	User string
	// Signer is the key that authenticates the management server; wrap a
	// crypto.Signer with ssh.NewSignerFromSigner. Required: there is no
	// password authentication.
	Signer ssh.Signer
	// KnownHostsFiles are OpenSSH known_hosts files holding the host's
	// key, under Addr's host name (with its port when not 22), as
	// knownhosts.Line writes it. A host that is not in them is refused
	// before connecting, and one that presents another key during the
	// key exchange, before authentication: nothing is sent to either.
	// Hashed host names are understood; @cert-authority lines are not
	// (an SSH host certificate alone does not admit a host). Required
	// unless InsecureIgnoreHostKey.
	KnownHostsFiles []string
	// InsecureIgnoreHostKey accepts any host key. WARNING: whoever can
	// intercept the connection then receives the host's certificate and
	// answers with a key of its own choosing, which the CA certifies
	// under the host's names. For tests only.
	InsecureIgnoreHostKey bool

	// RemoteBinDir is the absolute directory on the host holding the
	// programs keystore-setup and keystore-cert-import (examples/ of
	// this module; their flags are the contract). Required.
	RemoteBinDir string
	// RemoteDir is the host's absolute keystore directory (cloud.jks,
	// cloud.crt, cloud.key, cloud.ca.crt). Empty means
	// /etc/cloudstack/agent, CloudStack's.
	RemoteDir string
	// PropertiesFile is the host's agent.properties, which holds the
	// keystore passphrase. Empty means agent.properties in RemoteDir.
	PropertiesFile string
	// ReloadCommand is the POSIX shell command [SSHHost.Reload] runs on
	// the host after new credentials landed. Empty means
	//
	//	virt-admin server-update-tls libvirtd
	//
	// followed by QEMU's display-reload (through virsh
	// qemu-monitor-command) for each running guest, so that libvirtd and
	// the guests' VNC servers take the new files without a restart; a
	// guest without VNC TLS is skipped. A kvmpki agent
	// ([LoadAgentCredentials]) reads changed files by itself and needs
	// nothing. A platform whose agent must be told adds its own command
	// here.
	ReloadCommand string
	// Sudo runs every remote command through "sudo -n", for a User other
	// than root. False runs them as User.
	Sudo bool

	// DialTimeout bounds the TCP connection and the SSH handshake. Zero
	// means 30 seconds.
	DialTimeout time.Duration
	// StepTimeout bounds each remote command (setup, install, reload).
	// A command still running then is sent SIGKILL and, if it has not
	// ended a second later (sshd refuses signals to forced commands),
	// the connection is closed; the step fails either way. Zero means
	// 5 minutes (CloudStack's keystore-setup timeout).
	StepTimeout time.Duration
}

// SSHHost is a [Host] reached over SSH, CloudStack's host-add path
// (LibvirtServerDiscoverer.setupAgentSecurity) without its weaknesses: the
// host key is checked against known_hosts, the management server
// authenticates with a key, and nothing secret or PEM-encoded is ever on a
// command line. The keystore passphrase never leaves the host at all
// (keystore-setup keeps it in agent.properties); the certificate and the
// CA bundle travel on the session's standard input into a private
// temporary directory (mode 0700, files 0600) removed after the import.
//
// The connection is made on the first call and shared by the later ones
// (one session each); Close closes it.
type SSHHost struct {
	cfg      SSHConfig
	hostKeys ssh.HostKeyCallback
	algos    []string

	mu     sync.Mutex
	client *ssh.Client
	closed bool
}

var _ Host = (*SSHHost)(nil)

// NewSSHHost checks cfg and reads its known_hosts files. It does not
// connect.
func NewSSHHost(cfg *SSHConfig) (*SSHHost, error) {
	if cfg == nil {
		return nil, errors.New("ca: ssh: nil SSHConfig")
	}
	h := &SSHHost{cfg: *cfg}
	h.cfg.KnownHostsFiles = append([]string(nil), cfg.KnownHostsFiles...)
	c := &h.cfg
	if c.Addr == "" || c.User == "" || c.Signer == nil {
		return nil, errors.New("ca: ssh: SSHConfig needs Addr, User and Signer")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		c.Addr = net.JoinHostPort(strings.Trim(c.Addr, "[]"), "22")
	}
	if c.RemoteDir == "" {
		c.RemoteDir = defaultRemoteDir
	}
	if c.PropertiesFile == "" {
		c.PropertiesFile = path.Join(c.RemoteDir, "agent.properties")
	}
	// In the fields' order, so that the error names the field at fault
	// (a relative RemoteDir makes the default PropertiesFile relative too).
	for _, f := range []struct{ name, path string }{
		{"RemoteBinDir", c.RemoteBinDir}, {"RemoteDir", c.RemoteDir}, {"PropertiesFile", c.PropertiesFile},
	} {
		if !path.IsAbs(f.path) {
			return nil, fmt.Errorf("ca: ssh: SSHConfig.%s must be an absolute path, not %q", f.name, f.path)
		}
	}
	if c.ReloadCommand == "" {
		c.ReloadCommand = defaultReloadCommand
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = defaultSSHDialTimeout
	}
	if c.StepTimeout <= 0 {
		c.StepTimeout = defaultSSHStepTimeout
	}
	switch {
	case c.InsecureIgnoreHostKey:
		h.hostKeys = ssh.InsecureIgnoreHostKey()
	case len(c.KnownHostsFiles) == 0:
		return nil, errors.New("ca: ssh: SSHConfig needs KnownHostsFiles (or InsecureIgnoreHostKey)")
	default:
		cb, err := knownhosts.New(c.KnownHostsFiles...)
		if err != nil {
			return nil, fmt.Errorf("ca: ssh: reading known_hosts: %w", err)
		}
		known, err := knownKeys(cb, c.Addr)
		if err != nil {
			return nil, err
		}
		h.algos = hostKeyAlgorithms(known)
		h.hostKeys = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := cb(hostname, remote, key)
			var ke *knownhosts.KeyError
			switch {
			case errors.As(err, &ke) && len(ke.Want) > 0:
				return fmt.Errorf("%w: %s offered %s %s, known_hosts holds %s", ErrHostKeyChanged,
					hostname, key.Type(), ssh.FingerprintSHA256(key), ke.Want[0].String())
			case errors.As(err, &ke):
				return fmt.Errorf("%w: %s", ErrUnknownHostKey, hostname)
			case err != nil:
				return fmt.Errorf("ca: ssh: host key of %s: %w", hostname, err)
			}
			return nil
		}
	}
	return h, nil
}

// knownKeys lists the keys the known_hosts callback holds for addr, by
// asking it about a key no file can hold. An address with none is
// refused here, before any connection.
func knownKeys(cb ssh.HostKeyCallback, addr string) ([]ssh.PublicKey, error) {
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize))) // a key nobody has
	if err != nil {
		return nil, err
	}
	err = cb(addr, &net.TCPAddr{IP: net.IPv4zero}, probe)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil, fmt.Errorf("ca: ssh: known_hosts lookup of %s: %v", addr, err)
	}
	if len(ke.Want) == 0 {
		return nil, fmt.Errorf("%w: no known_hosts entry for %s", ErrUnknownHostKey, knownhosts.Normalize(addr))
	}
	keys := make([]ssh.PublicKey, len(ke.Want))
	for i, k := range ke.Want {
		keys[i] = k.Key
	}
	return keys, nil
}

// hostKeyAlgorithms are the signature algorithms of the known keys, so
// that the server is asked for a key known_hosts can check rather than its
// preferred one.
func hostKeyAlgorithms(keys []ssh.PublicKey) []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range keys {
		algs := []string{k.Type()}
		if k.Type() == ssh.KeyAlgoRSA {
			algs = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
		}
		for _, a := range algs {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// SetupKeystore runs keystore-setup on the host and returns its CSR. The
// command line carries the directory, the properties file, the key type
// and the names, nothing secret; the keystore passphrase stays in the
// host's agent.properties.
func (h *SSHHost) SetupKeystore(ctx context.Context, req *KeystoreSetup) ([]byte, error) {
	if req == nil {
		req = &KeystoreSetup{}
	}
	args := []string{h.program("keystore-setup"), "-dir", h.cfg.RemoteDir, "-properties", h.cfg.PropertiesFile}
	switch req.KeyAlgorithm {
	case provider.KeyAlgorithmDefault:
	case provider.KeyAlgorithmECDSA:
		if req.KeySize != 0 && req.KeySize != 256 {
			return nil, fmt.Errorf("ca: ssh: keystore-setup makes ECDSA P-256 keys only, not %d bits", req.KeySize)
		}
		args = append(args, "-key-type", "ecdsa")
	case provider.KeyAlgorithmRSA:
		args = append(args, "-key-type", "rsa")
		if req.KeySize != 0 {
			args = append(args, "-rsa-bits", strconv.Itoa(req.KeySize))
		}
	default:
		return nil, fmt.Errorf("ca: ssh: key algorithm %v is not one keystore-setup makes", req.KeyAlgorithm)
	}
	if len(req.DNSNames) > 0 {
		args = append(args, "-dns", strings.Join(req.DNSNames, ","))
	}
	if len(req.IPAddresses) > 0 {
		ips := make([]string, len(req.IPAddresses))
		for i, ip := range req.IPAddresses {
			ips[i] = ip.String()
		}
		args = append(args, "-ip", strings.Join(ips, ","))
	}
	out, err := h.run(ctx, "keystore-setup", h.command(args...), nil)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(out, []byte("-----BEGIN CERTIFICATE REQUEST-----")) {
		return nil, errors.New("ca: ssh: keystore-setup printed no CSR")
	}
	return out, nil
}

// installScript reads the certificate chain, a marker line and the CA
// bundle from standard input into two files of a private temporary
// directory, runs the import command given as its arguments with them, and
// removes the directory whatever happens. It is one line, for any login
// shell that passes it to sh.
const installScript = `umask 077; d=$(mktemp -d) || exit 1; trap 'rm -rf "$d"' EXIT; trap 'exit 1' HUP INT TERM; ` +
	`f="$d/cert.pem"; : > "$d/cert.pem"; : > "$d/ca.pem"; ` +
	`while IFS= read -r l; do if [ "$l" = "` + installMarker + `" ]; then f="$d/ca.pem"; else printf '%s\n' "$l" >> "$f"; fi; done; ` +
	`"$@" -cert "$d/cert.pem" -ca "$d/ca.pem"`

// installMarker separates the chain from the bundle on standard input; no
// PEM encoder writes such a line.
const installMarker = "-----KVMPKI CA BUNDLE-----"

// InstallCertificate runs keystore-cert-import on the host. The chain and
// the CA bundle travel on standard input, never in arguments or the
// environment; the import refuses, changing nothing, a certificate that
// does not match the host's key or chain to the bundle.
func (h *SSHHost) InstallCertificate(ctx context.Context, c *CertificateInstall) error {
	if c == nil || len(bytes.TrimSpace(c.CertificatePEM)) == 0 || len(bytes.TrimSpace(c.CABundlePEM)) == 0 {
		return errors.New("ca: ssh: CertificateInstall needs CertificatePEM and CABundlePEM")
	}
	if len(c.CertificatePEM)+len(c.CABundlePEM) > maxInstallInput {
		return fmt.Errorf("ca: ssh: certificate and bundle are over %d bytes", maxInstallInput)
	}
	if bytes.Contains(c.CertificatePEM, []byte(installMarker)) || bytes.Contains(c.CABundlePEM, []byte(installMarker)) {
		return errors.New("ca: ssh: PEM input holds the bundle marker line")
	}
	var in bytes.Buffer
	for _, part := range [][]byte{c.CertificatePEM, []byte(installMarker + "\n"), c.CABundlePEM} {
		in.Write(part)
		if !bytes.HasSuffix(part, []byte("\n")) {
			in.WriteByte('\n')
		}
	}
	import_ := []string{"sh", "-c", installScript, "sh", h.program("keystore-cert-import"), "-dir", h.cfg.RemoteDir, "-properties", h.cfg.PropertiesFile}
	_, err := h.run(ctx, "keystore-cert-import", h.command(import_...), in.Bytes())
	return err
}

// Reload runs SSHConfig.ReloadCommand on the host.
func (h *SSHHost) Reload(ctx context.Context) error {
	_, err := h.run(ctx, "reload", h.command("sh", "-c", h.cfg.ReloadCommand), nil)
	return err
}

// Close closes the SSH connection, if one was made. Later calls of the
// other methods fail; Close itself can be called again.
func (h *SSHHost) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.client == nil {
		return nil
	}
	err := h.client.Close()
	h.client = nil
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (h *SSHHost) program(name string) string { return path.Join(h.cfg.RemoteBinDir, name) }

// command quotes args for the remote login shell, through sudo -n when
// configured.
func (h *SSHHost) command(args ...string) string {
	if h.cfg.Sudo {
		args = append([]string{"sudo", "-n", "--"}, args...)
	}
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./,:=@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// connect returns the shared connection, dialing it when there is none.
func (h *SSHHost) connect(ctx context.Context) (*ssh.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("ca: ssh: SSHHost is closed")
	}
	if h.client != nil {
		return h.client, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", h.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("ca: ssh: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	cc, chans, reqs, err := ssh.NewClientConn(conn, h.cfg.Addr, &ssh.ClientConfig{
		User:              h.cfg.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(h.cfg.Signer)},
		HostKeyCallback:   h.hostKeys,
		HostKeyAlgorithms: h.algos,
	})
	if !stop() {
		if err == nil {
			cc.Close()
		}
		conn.Close()
		return nil, fmt.Errorf("ca: ssh: connecting to %s: %w", h.cfg.Addr, ctx.Err())
	}
	if err != nil {
		conn.Close()
		if errors.Is(err, ErrHostKeyChanged) || errors.Is(err, ErrUnknownHostKey) {
			return nil, err
		}
		return nil, fmt.Errorf("ca: ssh: connecting to %s: %w", h.cfg.Addr, err)
	}
	h.client = ssh.NewClient(cc, chans, reqs)
	return h.client, nil
}

// drop forgets a connection that failed, so that the next call dials
// again.
func (h *SSHHost) drop(c *ssh.Client) {
	h.mu.Lock()
	if h.client == c {
		h.client = nil
	}
	h.mu.Unlock()
	c.Close()
}

// RemoteCommandError is a host-side command of an [SSHHost] that failed:
// it exited non-zero, was killed at its timeout, or lost its connection.
type RemoteCommandError struct {
	// Program is "keystore-setup", "keystore-cert-import" or "reload".
	Program string
	// ExitStatus is the command's exit status, or -1 when it did not
	// exit (timeout, signal, lost connection).
	ExitStatus int
	// Stderr is the end of the command's standard error, at most 4 KiB,
	// as valid UTF-8.
	Stderr string
	// Err is the cause: an *ssh.ExitError, a context error, or a
	// connection error.
	Err error
}

func (e *RemoteCommandError) Error() string {
	msg := fmt.Sprintf("ca: ssh: %s: %v", e.Program, e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *RemoteCommandError) Unwrap() error { return e.Err }

// run runs one command in a new session with stdin as its standard input
// and returns its standard output, within StepTimeout.
func (h *SSHHost) run(ctx context.Context, program, cmd string, stdin []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.StepTimeout)
	defer cancel()
	client, err := h.connect(ctx)
	if err != nil {
		return nil, err
	}
	sess, err := client.NewSession()
	if err != nil {
		h.drop(client)
		return nil, fmt.Errorf("ca: ssh: %s: opening a session: %w", program, err)
	}
	defer sess.Close()
	stdout := &boundedBuffer{max: maxRemoteStdout}
	stderr := &boundedBuffer{max: maxRemoteStderr, keepTail: true}
	sess.Stdin = bytes.NewReader(stdin)
	sess.Stdout = stdout
	sess.Stderr = stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Kill the command (sshd refuses signals to a forced-command
		// session) and give its last words a moment to arrive; then
		// hang up the whole connection, which ends the wait whatever the
		// host does. The next step dials again.
		sess.Signal(ssh.SIGKILL)
		select {
		case <-done:
		case <-time.After(killGrace):
			h.drop(client)
			<-done
		}
		err = ctx.Err()
	}
	if err == nil && stdout.over {
		err = fmt.Errorf("standard output over %d bytes", maxRemoteStdout)
	}
	if err != nil {
		status := -1
		var ee *ssh.ExitError
		if errors.As(err, &ee) && ee.Signal() == "" {
			status = ee.ExitStatus()
		}
		return nil, &RemoteCommandError{Program: program, ExitStatus: status, Stderr: stderr.String(), Err: err}
	}
	return stdout.buf.Bytes(), nil
}

// boundedBuffer keeps at most max bytes: the first ones, or with keepTail
// the last ones.
type boundedBuffer struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	max      int
	keepTail bool
	over     bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if b.keepTail {
		b.buf.Write(p)
		if extra := b.buf.Len() - b.max; extra > 0 {
			b.over = true
			rest := append([]byte(nil), b.buf.Bytes()[extra:]...)
			b.buf.Reset()
			b.buf.Write(rest)
		}
		return n, nil
	}
	if room := b.max - b.buf.Len(); len(p) > room {
		b.over = true
		p = p[:max(room, 0)]
	}
	b.buf.Write(p)
	return n, nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.ToValidUTF8(b.buf.String(), string(utf8.RuneError))
	if b.over && b.keepTail {
		s = "..." + s
	}
	return s
}
