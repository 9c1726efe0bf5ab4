package libvirttls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/libvirtconf"
	"github.com/kvmpki/kvmpki/provider"
)

// serialSeen returns a TLS client configuration for client, trusting
// client.CACert, that records the serial number of the server
// certificate it verified in *serial.
func serialSeen(t testing.TB, client *Credentials, serverName string, serial **big.Int) *tls.Config {
	t.Helper()
	cfg, err := pkiOf(client).ClientTLSConfig(serverName)
	require.NoError(t, err)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		*serial = cs.PeerCertificates[0].SerialNumber
		return nil
	}
	return cfg
}

// applyCreds plans and applies creds under opts and returns the plan.
func applyCreds(t testing.TB, creds *Credentials, opts *Config) *Plan {
	t.Helper()
	plan, err := NewPlan(t.Context(), creds, opts)
	require.NoError(t, err)
	require.NoError(t, plan.Apply(t.Context(), nil))
	return plan
}

// vncHost lays out a host's PKI from a first certificate, plus
// dh-params.pem in its VNC directory, and returns the CA, that
// certificate, a console proxy's credentials and the plan's options.
func vncHost(t *testing.T) (*testCA, *x509.Certificate, *Credentials, *Config) {
	t.Helper()
	ca := newTestCA(t)
	host, cert := ca.host(t, "kvm1.example.org")
	proxy, _ := ca.issue(t, provider.RoleClient, "consoleproxy.example.org")
	proxy.CACert = host.CACert
	opts := &Config{LookupGroup: fakeGroups, Root: newRoot(t)}
	applyCreds(t, host, opts)
	peers.WriteDHParams(t, opts.DiskPath(VNCDir))
	return ca, cert, proxy, opts
}

// TestReloadVNCQMPInterop proves display-reload on a real QEMU VNC-TLS
// server: after the VNC directory's files are replaced by a plan, QEMU
// keeps serving the old certificate until ReloadVNCQMP, and then a new
// VeNCrypt handshake sees the new certificate's serial, from the same
// QEMU process.
func TestReloadVNCQMPInterop(t *testing.T) {
	t.Parallel()
	peers.Require(t, "qemu-system-x86_64")
	ca, oldCert, proxy, opts := vncHost(t)
	vncDir := opts.DiskPath(VNCDir)
	q, err := peers.StartQEMUVNCFromDir(t, vncDir, peers.QEMUVNCOptions{QMP: true})
	require.NoError(t, err)
	pid := q.PID()

	var seen *big.Int
	cfg := serialSeen(t, proxy, "127.0.0.1", &seen)
	require.NoError(t, q.Probe(t, cfg))
	require.Equal(t, oldCert.SerialNumber, seen)

	renewed, newCert := ca.host(t, "kvm1.example.org")
	plan := applyCreds(t, renewed, opts)
	require.NotEqual(t, oldCert.SerialNumber, newCert.SerialNumber)
	require.NoError(t, q.Probe(t, cfg))
	assert.Equal(t, oldCert.SerialNumber, seen, "new files alone change nothing: QEMU holds its credentials")
	assert.Contains(t, plan.Diff(), VNCDir+"/"+QEMUServerCert)

	require.NoError(t, ReloadVNCQMP(t.Context(), q.QMPSocket))
	require.NoError(t, q.Probe(t, cfg), "the console proxy still gets in")
	assert.Equal(t, newCert.SerialNumber, seen, "after display-reload a new handshake sees the new certificate")
	assert.Equal(t, pid, q.PID())
	assert.False(t, q.Exited(), "QEMU never stopped")

	// A second reload of the same files is harmless.
	require.NoError(t, ReloadVNCQMP(t.Context(), q.QMPSocket))
	require.NoError(t, q.Probe(t, cfg))
	assert.Equal(t, newCert.SerialNumber, seen)
}

// embeddedLibvirt is libvirt's QEMU driver embedded in each virsh
// process (qemu:///embed?root=ROOT): real libvirt starting real guests,
// without a daemon and without touching the host's /etc/libvirt or
// /run/libvirt. Guests keep running between virsh commands, which
// reconnect to them.
type embeddedLibvirt struct {
	uri  string
	root string
}

// startEmbeddedLibvirt makes a root for the embedded driver whose
// qemu.conf gives guests VNC TLS from vncDir (verifying clients) and runs
// them as root without virtlogd or a security driver.
func startEmbeddedLibvirt(t *testing.T, vncDir string) *embeddedLibvirt {
	t.Helper()
	peers.Require(t, "virsh", "qemu-system-x86_64")
	// QEMU's monitor socket lives under the root: keep it short.
	root, err := os.MkdirTemp("", "kvmpki-embed-")
	require.NoError(t, err)
	e := &embeddedLibvirt{uri: "qemu:///embed?root=" + root, root: root}
	t.Cleanup(func() {
		// Stop every guest, then remove the root.
		out, _ := e.virshErr(t, "list", "--name")
		for name := range strings.Lines(out) {
			if name = strings.TrimSpace(name); name != "" {
				_, _ = e.virshErr(t, "destroy", name)
			}
		}
		_ = os.RemoveAll(root)
	})
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	conf, err := libvirtconf.Edit(nil,
		libvirtconf.Setting{Key: "vnc_tls", Value: libvirtconf.IntValue(1)},
		libvirtconf.Setting{Key: "vnc_tls_x509_cert_dir", Value: libvirtconf.StringValue(vncDir)},
		libvirtconf.Setting{Key: "vnc_tls_x509_verify", Value: libvirtconf.IntValue(1)},
		libvirtconf.Setting{Key: "vnc_listen", Value: libvirtconf.StringValue("127.0.0.1")},
		libvirtconf.Setting{Key: "stdio_handler", Value: libvirtconf.StringValue("file")},
		libvirtconf.Setting{Key: "user", Value: libvirtconf.StringValue("root")},
		libvirtconf.Setting{Key: "group", Value: libvirtconf.StringValue("root")},
		libvirtconf.Setting{Key: "security_driver", Value: libvirtconf.StringValue("none")},
	)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc", "qemu.conf"), conf, 0o644))
	return e
}

// virshErr runs virsh on the embedded driver and returns its standard
// output, or an error holding its standard error.
func (e *embeddedLibvirt) virshErr(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "virsh", append([]string{"-q", "-c", e.uri}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

func (e *embeddedLibvirt) virsh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.virshErr(t, args...)
	require.NoError(t, err)
	return out
}

// startGuest defines and starts a 32 MiB TCG guest with no disk and, if
// vnc, a VNC display on an automatic port. It returns the guest's QEMU
// PID.
func (e *embeddedLibvirt) startGuest(t testing.TB, name string, vnc bool) int {
	t.Helper()
	graphics := ""
	if vnc {
		graphics = `<graphics type='vnc' autoport='yes'/>`
	}
	xml := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>32</memory>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>%s</devices></domain>`, name, graphics)
	path := filepath.Join(t.TempDir(), name+".xml")
	require.NoError(t, os.WriteFile(path, []byte(xml), 0o600))
	e.virsh(t, "define", path)
	e.virsh(t, "start", name)
	return e.pid(t, name)
}

// pid returns the QEMU PID of a running guest, from libvirt's pid file.
func (e *embeddedLibvirt) pid(t testing.TB, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, "run", "qemu", name+".pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return pid
}

// vncAddr returns the guest's VNC address, from virsh domdisplay.
func (e *embeddedLibvirt) vncAddr(t testing.TB, name string) string {
	t.Helper()
	out := strings.TrimSpace(e.virsh(t, "vncdisplay", name))
	_, display, ok := strings.Cut(out, ":")
	require.True(t, ok, "vncdisplay printed %q", out)
	n, err := strconv.Atoi(display)
	require.NoError(t, err)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(5900+n))
}

// TestReloadVNCLibvirtInterop proves ReloadVNC through real libvirt: a
// guest libvirt started with VNC TLS from the plan's VNC directory serves
// the new certificate after ReloadVNC, from the same QEMU process; a
// running guest without VNC is skipped, not failed.
func TestReloadVNCLibvirtInterop(t *testing.T) {
	t.Parallel()
	ca, oldCert, proxy, opts := vncHost(t)
	vncDir := opts.DiskPath(VNCDir)

	lv := startEmbeddedLibvirt(t, vncDir)
	pid := lv.startGuest(t, "console1", true)
	lv.startGuest(t, "headless1", false)
	addr := lv.vncAddr(t, "console1")

	var seen *big.Int
	cfg := serialSeen(t, proxy, "127.0.0.1", &seen)
	require.NoError(t, peers.ProbeVNC(t, addr, cfg))
	require.Equal(t, oldCert.SerialNumber, seen)

	renewed, newCert := ca.host(t, "kvm1.example.org")
	applyCreds(t, renewed, opts)
	require.NoError(t, peers.ProbeVNC(t, addr, cfg))
	assert.Equal(t, oldCert.SerialNumber, seen, "new files alone change nothing")

	res, err := ReloadVNC(t.Context(), &ReloadVNCOptions{URI: lv.uri})
	require.NoError(t, err)
	assert.Equal(t, []string{"console1"}, res.Reloaded)
	assert.Equal(t, []string{"headless1"}, res.Skipped)

	require.NoError(t, peers.ProbeVNC(t, addr, cfg))
	assert.Equal(t, newCert.SerialNumber, seen, "after display-reload a new handshake sees the new certificate")
	assert.Equal(t, pid, lv.pid(t, "console1"), "the guest's QEMU never stopped")
	assert.Contains(t, lv.virsh(t, "domstate", "console1"), "running")

	// A named guest that does not exist fails by name.
	res, err = ReloadVNC(t.Context(), &ReloadVNCOptions{URI: lv.uri, Domains: []string{"console1", "nosuch"}})
	var ge *GuestError
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, "nosuch", ge.Domain)
	assert.Equal(t, []string{"console1"}, res.Reloaded)
}

// hostPathsLibvirtd starts libvirtd on the host paths of a layout that
// libvirttls applies from creds (see TestHostPathsAndReload) and returns
// it, the plan's options and the URI of its admin socket for virt-admin.
func hostPathsLibvirtd(t testing.TB, creds *Credentials) (*peers.Libvirtd, *Config, string) {
	t.Helper()
	var sockDir string
	opts := &Config{LookupGroup: fakeGroups, Root: newRoot(t), ListenAddr: "127.0.0.1"}
	d, err := peers.StartLibvirtdOnHostPaths(t, opts.DiskPath("/etc/pki"), func(c peers.LibvirtdConfig) (string, error) {
		sockDir = c.SockDir
		opts.TLSPort = c.Port
		opts.ExtraLibvirtd = []libvirtconf.Setting{
			{Key: "unix_sock_dir", Value: libvirtconf.StringValue(c.SockDir)},
			{Key: "log_outputs", Value: libvirtconf.StringValue("3:file:" + c.LogPath)},
		}
		plan, err := NewPlan(t.Context(), creds, opts)
		if err != nil {
			return "", err
		}
		return opts.DiskPath(LibvirtdConfPath), plan.Apply(t.Context(), nil)
	})
	require.NoError(t, err)
	return d, opts, "libvirtd:///system?socket=" + filepath.Join(sockDir, "libvirt-admin-sock")
}

// TestServerUpdateTLSNewCertificate proves the plan's libvirtd action on
// a renewal: after a new host certificate is applied and "virt-admin
// server-update-tls libvirtd" runs, a new TLS connection to the running
// libvirtd (same PID) sees the new certificate, and a virsh client whose
// CRL revokes the old certificate connects over test+tls://, which it
// could not before.
func TestServerUpdateTLSNewCertificate(t *testing.T) {
	t.Parallel()
	peers.Require(t, "libvirtd", "virsh", "virt-admin")
	ca := newTestCA(t)
	host, oldCert := ca.host(t, "kvm1.example.org")
	peer, _ := ca.host(t, "kvm2.example.org")
	host.CRL = ca.crl(t) // crl_file set from the start: the renewal changes files only

	d, opts, adminURI := hostPathsLibvirtd(t, host)
	pid := d.PID()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(d.Port))

	var seen *big.Int
	dial := func() {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, serialSeen(t, peer, "localhost", &seen))
		require.NoError(t, err)
		require.NoError(t, conn.Close())
	}
	dial()
	require.Equal(t, oldCert.SerialNumber, seen)

	// The renewal: a new host certificate, and the old one revoked.
	renewed, newCert := ca.host(t, "kvm1.example.org")
	ca.revoke(t, oldCert)
	renewed.CRL = ca.crl(t)
	plan, err := NewPlan(t.Context(), renewed, opts)
	require.NoError(t, err)
	require.NotEmpty(t, plan.Actions)
	require.Equal(t, []string{"virt-admin", "server-update-tls", "libvirtd"}, plan.Actions[0].Command)
	require.NoError(t, plan.Apply(t.Context(), nil))

	strict := pkiOf(peer)
	strict.CRL = renewed.CRL // a client that knows the old certificate is revoked
	dial()
	assert.Equal(t, oldCert.SerialNumber, seen, "new files alone change nothing")
	assert.ErrorContains(t, d.Connect(t, strict, "localhost"), "revoked", "virsh refuses the old server certificate")

	a := plan.Actions[0]
	require.NoError(t, ExecAction(t.Context(), Action{Command: append([]string{a.Command[0], "-c", adminURI}, a.Command[1:]...)}))

	dial()
	assert.Equal(t, newCert.SerialNumber, seen, "after server-update-tls a new connection sees the new certificate")
	assert.NoError(t, d.Connect(t, strict, "localhost"), "virsh over test+tls:// accepts the new certificate")
	assert.Equal(t, pid, d.PID())
	assert.False(t, d.Exited(), "libvirtd never stopped")
}
