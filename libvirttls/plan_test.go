package libvirttls

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/safefs"
	"github.com/kvmpki/kvmpki/internal/safefs/safefstest"
	"github.com/kvmpki/kvmpki/libvirtconf"
	"github.com/kvmpki/kvmpki/provider"
)

// newRoot returns a temporary host root holding Debian's stock
// libvirtd.conf and qemu.conf.
func newRoot(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc/libvirt"), 0o755))
	for _, name := range []string{"libvirtd.conf", "qemu.conf"} {
		require.NoError(t, os.WriteFile(filepath.Join(root, "etc/libvirt", name), stock(t, name), 0o644))
	}
	return root
}

// snapshot describes every file under root: type, mode, owner, content
// or link target.
func snapshot(t testing.TB, root string) map[string]string { return safefstest.Snapshot(t, root) }

// testQEMUGID is the gid fakeGroups gives libvirt-qemu: no unit test
// depends on the users and groups of the machine running it.
const testQEMUGID = 64055

// fakeGroups is a group database holding only libvirt-qemu.
func fakeGroups(name string) (*user.Group, error) {
	if name == defaultQEMUGroup {
		return &user.Group{Gid: strconv.Itoa(testQEMUGID), Name: name}, nil
	}
	return nil, user.UnknownGroupError(name)
}

// noGroups is the group database of a machine without libvirt.
func noGroups(name string) (*user.Group, error) { return nil, user.UnknownGroupError(name) }

// qemuGID returns the gid the QEMU keys get with fakeGroups:
// libvirt-qemu's as root, the caller's group otherwise.
func qemuGID(t testing.TB) int {
	t.Helper()
	if os.Geteuid() != 0 {
		return os.Getegid()
	}
	return testQEMUGID
}

func TestPlanApply(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	creds.CRL = ca.crl(t)
	root := newRoot(t)
	gid := qemuGID(t)
	opts := goldenConfig()
	opts.Root = root

	plan, err := NewPlan(t.Context(), creds, opts)
	require.NoError(t, err)
	diff := plan.Diff()
	t.Log(diff)
	for _, want := range []string{
		"mkdir   /etc/pki/qemu (0750 root:",
		"create  /etc/pki/libvirt/private/serverkey.pem (0600 root:root): private key (not shown)",
		`create  /etc/pki/CA/cacert.pem (0644 root:root): certificate "CN=`,
		"create  /etc/pki/CA/cacrl.pem (0644 root:root): CRL number",
		"-#listen_tls = 0\n+listen_tls = 1\n",
		"+migrate_tls_x509_cert_dir = \"/etc/pki/qemu\"\n",
		"run     systemctl restart libvirtd.service",
	} {
		if os.Geteuid() != 0 {
			want = strings.ReplaceAll(want, "root:root", "")
		}
		assert.Contains(t, diff, want)
	}
	assert.NotContains(t, diff, "PRIVATE KEY")
	keyBody := strings.Split(string(creds.Key), "\n")[1]
	assert.NotContains(t, diff, keyBody, "the diff never shows key material")

	var ran []string
	require.NoError(t, plan.Apply(t.Context(), &ApplyOptions{RunAction: func(_ context.Context, a Action) error {
		ran = append(ran, strings.Join(a.Command, " "))
		return nil
	}}))
	assert.Equal(t, []string{"systemctl restart libvirtd.service"}, ran)

	files := []struct {
		path string
		data []byte
		mode fs.FileMode
		gid  int
	}{
		{CACertPath, creds.CACert, 0o644, 0},
		{CRLPath, creds.CRL, 0o644, 0},
		{ServerCertPath, creds.Cert, 0o644, 0},
		{ClientCertPath, creds.Cert, 0o644, 0},
		{ServerKeyPath, creds.Key, 0o600, 0},
		{ClientKeyPath, creds.Key, 0o600, 0},
		{VNCDir + "/ca-cert.pem", creds.CACert, 0o644, 0},
		{VNCDir + "/ca-crl.pem", creds.CRL, 0o644, 0},
		{VNCDir + "/server-cert.pem", creds.Cert, 0o644, 0},
		{VNCDir + "/server-key.pem", creds.Key, 0o640, gid},
		{QEMUDir + "/ca-cert.pem", creds.CACert, 0o644, 0},
		{QEMUDir + "/server-cert.pem", creds.Cert, 0o644, 0},
		{QEMUDir + "/server-key.pem", creds.Key, 0o640, gid},
		{QEMUDir + "/client-cert.pem", creds.Cert, 0o644, 0},
		{QEMUDir + "/client-key.pem", creds.Key, 0o640, gid},
	}
	for _, f := range files {
		p := opts.DiskPath(f.path)
		b, err := os.ReadFile(p)
		if assert.NoError(t, err, f.path) {
			assert.Equal(t, string(f.data), string(b), f.path)
		}
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		assert.Equal(t, f.mode, fi.Mode(), f.path)
		if os.Geteuid() == 0 {
			assert.Equal(t, uint32(f.gid), fi.Sys().(*syscall.Stat_t).Gid, f.path)
		}
	}
	for dir, mode := range map[string]fs.FileMode{"/etc/pki/libvirt/private": 0o700, VNCDir: 0o750, QEMUDir: 0o750, "/etc/pki/CA": 0o755} {
		fi, err := os.Stat(opts.DiskPath(dir))
		require.NoError(t, err)
		assert.Equal(t, fs.ModeDir|mode, fi.Mode(), dir)
	}
	libvirtd, err := os.ReadFile(opts.DiskPath(LibvirtdConfPath))
	require.NoError(t, err)
	assert.Equal(t, string(stock(t, "libvirtd.conf.golden")), string(libvirtd))
	qemu, err := os.ReadFile(opts.DiskPath(QEMUConfPath))
	require.NoError(t, err)
	assert.Equal(t, string(stock(t, "qemu.conf.golden")), string(qemu))
	leftovers, err := filepath.Glob(filepath.Join(root, "etc/*/*kvmpki*"))
	require.NoError(t, err)
	assert.Empty(t, leftovers, "no temporary file is left behind")

	again, err := NewPlan(t.Context(), creds, opts)
	require.NoError(t, err)
	assert.True(t, again.Empty(), "a second plan is empty:\n%s", again.Diff())
	assert.Equal(t, "no changes\n", again.Diff())

	t.Run("renewal reloads TLS without a restart", func(t *testing.T) {
		renewed, _ := ca.host(t, "kvm1.example.org")
		renewed.CRL = creds.CRL
		plan, err := NewPlan(t.Context(), renewed, opts)
		require.NoError(t, err)
		var paths []string
		for _, ch := range plan.Changes {
			assert.Equal(t, ChangeFile, ch.Kind)
			paths = append(paths, ch.Path)
		}
		assert.ElementsMatch(t, []string{ServerCertPath, ClientCertPath, ServerKeyPath, ClientKeyPath,
			VNCDir + "/server-cert.pem", VNCDir + "/server-key.pem",
			QEMUDir + "/server-cert.pem", QEMUDir + "/server-key.pem", QEMUDir + "/client-cert.pem", QEMUDir + "/client-key.pem"}, paths)
		require.Len(t, plan.Actions, 2)
		assert.Equal(t, []string{"virt-admin", "server-update-tls", "libvirtd"}, plan.Actions[0].Command)
		assert.Equal(t, []string{"virsh", "qemu-monitor-command"}, plan.Actions[1].Command[:2], "running guests' VNC servers reload too")
		assert.NotNil(t, plan.Actions[1].Run)
	})
}

func TestPlanSymlinks(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	root := newRoot(t)
	opts := &Config{LookupGroup: fakeGroups, Root: root, Install: InstallSymlinks}
	_, err := NewPlan(t.Context(), creds, opts)
	assert.ErrorContains(t, err, "InstallSymlinks needs the credentials", "links would dangle")

	agent := filepath.Join(root, "etc/cloudstack/agent")
	require.NoError(t, os.MkdirAll(agent, 0o700))
	for name, data := range map[string][]byte{AgentCACert: creds.CACert, AgentCert: creds.Cert, AgentKey: creds.Key} {
		require.NoError(t, os.WriteFile(filepath.Join(agent, name), data, 0o600))
	}
	plan, err := NewPlan(t.Context(), creds, opts)
	require.NoError(t, err)
	require.NoError(t, plan.Apply(t.Context(), nil))
	for link, target := range map[string]string{
		CACertPath:                  "/etc/cloudstack/agent/cloud.ca.crt",
		ServerCertPath:              "/etc/cloudstack/agent/cloud.crt",
		ServerKeyPath:               "/etc/cloudstack/agent/cloud.key",
		ClientKeyPath:               "/etc/cloudstack/agent/cloud.key",
		VNCDir + "/server-cert.pem": "/etc/cloudstack/agent/cloud.crt",
	} {
		got, err := os.Readlink(opts.DiskPath(link))
		if assert.NoError(t, err, link) {
			assert.Equal(t, target, got, link)
		}
	}
	for _, key := range []string{VNCDir + "/server-key.pem", QEMUDir + "/client-key.pem"} {
		fi, err := os.Lstat(opts.DiskPath(key))
		require.NoError(t, err)
		assert.True(t, fi.Mode().IsRegular(), "%s: QEMU's keys are copies", key)
	}
	again, err := NewPlan(t.Context(), creds, opts)
	require.NoError(t, err)
	assert.True(t, again.Empty(), again.Diff())
	st := CheckHost(t.Context(), opts, nil)
	assert.True(t, st.Secured, "links are resolved under the root: %s", st)
}

func TestApplyRollsBack(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	root := newRoot(t)
	opts := &Config{LookupGroup: fakeGroups, Root: root}
	// A host that already has an older layout: the rollback must bring
	// back those files, not merely delete the new ones.
	first, err := NewPlan(t.Context(), creds, opts)
	require.NoError(t, err)
	require.NoError(t, first.Apply(t.Context(), nil))
	renewed, _ := ca.host(t, "kvm1.example.org")
	opts2 := *opts
	opts2.MigrateTLSForce = true
	// A directory whose mode the plan fixes: the rollback restores it.
	require.NoError(t, os.Chmod(opts.DiskPath(QEMUDir), 0o755))
	before := snapshot(t, root)

	for _, failAt := range []int{1, 5, 11} {
		t.Run(fmt.Sprintf("rename %d fails", failAt), func(t *testing.T) {
			plan, err := NewPlan(t.Context(), renewed, &opts2)
			require.NoError(t, err)
			require.GreaterOrEqual(t, len(plan.Changes), failAt)
			n := 0
			plan.stepHook = func(s safefs.Step) error {
				if s.Op != "rename" {
					return nil
				}
				n++
				if n == failAt {
					return errors.New("injected failure")
				}
				return nil
			}
			err = plan.Apply(t.Context(), nil)
			require.ErrorContains(t, err, "injected failure")
			assert.Equal(t, before, snapshot(t, root), "a failed apply leaves the old files")
		})
	}

	t.Run("stale plan", func(t *testing.T) {
		plan, err := NewPlan(t.Context(), renewed, &opts2)
		require.NoError(t, err)
		conf := opts.DiskPath(QEMUConfPath)
		b, err := os.ReadFile(conf)
		require.NoError(t, err)
		edited := append(b, "# an admin's edit\n"...)
		require.NoError(t, os.WriteFile(conf, edited, 0o644))
		want := snapshot(t, root)
		assert.ErrorIs(t, plan.Apply(t.Context(), nil), ErrStalePlan)
		assert.Equal(t, want, snapshot(t, root))
	})
}

func TestPlanActions(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	root := newRoot(t)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "lib/systemd/system"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "lib/systemd/system/libvirtd-tls.socket"), []byte("[Socket]\n"), 0o644))
	plan, err := NewPlan(t.Context(), creds, &Config{LookupGroup: fakeGroups, Root: root})
	require.NoError(t, err)
	var cmds []string
	for _, a := range plan.Actions {
		cmds = append(cmds, strings.Join(a.Command, " "))
	}
	assert.Equal(t, []string{"systemctl stop libvirtd.service", "systemctl enable --now libvirtd-tls.socket", "systemctl start libvirtd.service"}, cmds)

	masked := filepath.Join(root, "etc/systemd/system")
	require.NoError(t, os.MkdirAll(masked, 0o755))
	require.NoError(t, os.Symlink("/dev/null", filepath.Join(masked, "libvirtd.socket")))
	legacy, err := NewPlan(t.Context(), creds, &Config{LookupGroup: fakeGroups, Root: root})
	require.NoError(t, err)
	require.Len(t, legacy.Actions, 1, "masked sockets: CloudStack's legacy --listen mode")
	assert.Equal(t, []string{"systemctl", "restart", "libvirtd.service"}, legacy.Actions[0].Command)
	require.NoError(t, os.Remove(filepath.Join(masked, "libvirtd.socket")))

	failing := errors.New("unit not found")
	err = plan.Apply(t.Context(), &ApplyOptions{RunAction: func(context.Context, Action) error { return failing }})
	assert.ErrorIs(t, err, failing)
	assert.ErrorContains(t, err, "files applied")
}

func TestNewPlanRefusesBadCredentials(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	good, goodCert := ca.host(t, "kvm1.example.org")
	foreign, _ := other.host(t, "kvm1.example.org")
	clientOnly, _ := ca.issue(t, provider.RoleClient, "client.example.org")
	revoked, revokedCert := ca.host(t, "kvm2.example.org")
	ca.revoke(t, revokedCert)
	revoked.CRL = ca.crl(t)

	for _, tc := range []struct {
		name  string
		creds *Credentials
		now   time.Time
		err   error
		msg   string
	}{
		{name: "key of another certificate", creds: &Credentials{CACert: good.CACert, Cert: good.Cert, Key: foreign.Key}, err: ErrCredentialsInvalid, msg: "does not match"},
		{name: "foreign CA", creds: &Credentials{CACert: good.CACert, Cert: foreign.Cert, Key: foreign.Key}, err: ErrCredentialsInvalid, msg: "unknown authority"},
		{name: "expired", creds: good, now: goodCert.NotAfter.Add(time.Hour), err: ErrCredentialsInvalid, msg: "expired"},
		{name: "client-only certificate", creds: clientOnly, err: ErrCredentialsInvalid, msg: "key usage"},
		{name: "revoked", creds: revoked, err: ErrRevoked},
		{name: "CRL of another CA", creds: &Credentials{CACert: good.CACert, Cert: good.Cert, Key: good.Key, CRL: other.crl(t)}, err: ErrCredentialsInvalid, msg: "not signed"},
		{name: "no key", creds: &Credentials{CACert: good.CACert, Cert: good.Cert}, err: ErrCredentialsMissing},
		{name: "garbage key", creds: &Credentials{CACert: good.CACert, Cert: good.Cert, Key: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}, err: ErrCredentialsInvalid, msg: "PRIVATE KEY block"},
		{name: "certificate in CA file is a leaf", creds: &Credentials{CACert: good.Cert, Cert: good.Cert, Key: good.Key}, err: ErrCredentialsInvalid, msg: "non-CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			before := snapshot(t, root)
			opts := &Config{LookupGroup: fakeGroups, Root: root}
			if !tc.now.IsZero() {
				opts.Time = func() time.Time { return tc.now }
			}
			_, err := NewPlan(t.Context(), tc.creds, opts)
			assert.ErrorIs(t, err, tc.err)
			if tc.msg != "" {
				assert.ErrorContains(t, err, tc.msg)
			}
			assert.Equal(t, before, snapshot(t, root), "nothing written")
		})
	}
}

func TestNewPlanNeedsRoot(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	_, err := NewPlan(t.Context(), creds, &Config{LookupGroup: fakeGroups, Root: filepath.Join(t.TempDir(), "missing")})
	assert.ErrorContains(t, err, "is not a directory")
	_, err = NewPlan(t.Context(), nil, nil)
	assert.ErrorIs(t, err, ErrCredentialsMissing)
}

func TestLoadCredentials(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, AgentCACert), creds.CACert, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, AgentCert), creds.Cert, 0o644))
	_, err := LoadCredentials(t.Context(), dir)
	assert.ErrorIs(t, err, ErrCredentialsMissing)
	assert.ErrorContains(t, err, AgentKey)
	require.NoError(t, os.WriteFile(filepath.Join(dir, AgentKey), creds.Key, 0o600))
	got, err := LoadCredentials(t.Context(), dir)
	require.NoError(t, err)
	assert.Equal(t, creds, got)
}

func TestQEMUGroup(t *testing.T) {
	conf, err := libvirtconf.Parse([]byte("group = \"kvm\"\n"))
	require.NoError(t, err)
	plus, err := libvirtconf.Parse([]byte("group = \"+64055\"\n"))
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		opts *Config
		conf *libvirtconf.Config
		want string
	}{
		{name: "default", opts: nil, want: defaultQEMUGroup},
		{name: "qemu.conf", opts: &Config{}, conf: conf, want: "kvm"},
		{name: "numeric in qemu.conf", opts: &Config{}, conf: plus, want: "+64055"},
		{name: "ExtraQEMU over qemu.conf", opts: &Config{ExtraQEMU: []libvirtconf.Setting{{Key: "group", Value: libvirtconf.StringValue("root")}}}, conf: conf, want: "root"},
		{name: "QEMUGroup over all", opts: &Config{QEMUGroup: "qemu", ExtraQEMU: []libvirtconf.Setting{{Key: "group", Value: libvirtconf.StringValue("root")}}}, conf: conf, want: "qemu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.opts.qemuGroup(tc.conf))
		})
	}
}

func TestWritePKIPath(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	creds.CRL = ca.crl(t)
	dir := filepath.Join(t.TempDir(), "pki")
	require.NoError(t, WritePKIPath(t.Context(), dir, creds))
	require.NoError(t, WritePKIPath(t.Context(), dir, creds), "existing files are replaced")
	for name, want := range map[string]struct {
		data []byte
		mode fs.FileMode
	}{
		"cacert.pem":     {creds.CACert, 0o644},
		"clientcert.pem": {creds.Cert, 0o644},
		"clientkey.pem":  {creds.Key, 0o600},
		"cacrl.pem":      {creds.CRL, 0o644},
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, want.mode, fi.Mode(), name)
		assert.Equal(t, string(want.data), string(readFile(t, filepath.Join(dir, name))), name)
	}
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, fs.ModeDir|0o700, fi.Mode())
	assert.ErrorIs(t, WritePKIPath(t.Context(), dir, &Credentials{CACert: creds.CACert}), ErrCredentialsMissing)
}

func TestNewPlanNamesTheBrokenConfig(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	root := newRoot(t)
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/libvirt/qemu.conf"), []byte("user = \"root\"\ngroup = root\n"), 0o644))
	_, err := NewPlan(t.Context(), creds, &Config{LookupGroup: fakeGroups, Root: root})
	var se *libvirtconf.SyntaxError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "libvirtconf: /etc/libvirt/qemu.conf line 2: expecting a value, found 'r'", err.Error())
}

func TestExecAction(t *testing.T) {
	require.NoError(t, ExecAction(t.Context(), Action{Command: []string{"true"}}))
	err := ExecAction(t.Context(), Action{Command: []string{"sh", "-c", "echo unit masked >&2; exit 3"}})
	assert.ErrorContains(t, err, "unit masked")
	assert.ErrorContains(t, err, "exit status 3")
	assert.Error(t, ExecAction(t.Context(), Action{}))
}
