package libvirttls

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/libvirtconf"
)

// fakeUnits is a systemd that knows the given units.
type fakeUnits map[string]UnitState

func (f fakeUnits) UnitState(_ context.Context, unit string) (UnitState, error) {
	return f[unit], nil
}

// brokenUnits is a systemd that cannot be asked.
type brokenUnits struct{}

func (brokenUnits) UnitState(context.Context, string) (UnitState, error) {
	return UnitState{}, errors.New("systemd unreachable")
}

// editConf sets settings in the configuration file at hostPath under o.
func editConf(t *testing.T, o *Config, hostPath string, settings ...libvirtconf.Setting) {
	t.Helper()
	b, err := libvirtconf.Edit(readFile(t, o.DiskPath(hostPath)), settings...)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(o.DiskPath(hostPath), b, 0o644))
}

// enableUnit makes unit enabled under root the way systemctl enable does.
func enableUnit(t *testing.T, root, unit string) {
	t.Helper()
	for _, dir := range []string{"lib/systemd/system", "etc/systemd/system/sockets.target.wants"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, dir), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "lib/systemd/system", unit), []byte("[Socket]\n"), 0o644))
	require.NoError(t, os.Symlink("/lib/systemd/system/"+unit, filepath.Join(root, "etc/systemd/system/sockets.target.wants", unit)))
}

// TestCheckHostRefusesInsecureSettings: a host whose files are all in
// place is still not secured while plain TCP is served or a certificate
// check is off (issue 11, items 1 and 2).
func TestCheckHostRefusesInsecureSettings(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, o *Config)
		msg   string
	}{
		{name: "libvirtd-tcp.socket enabled", spoil: func(t *testing.T, o *Config) {
			enableUnit(t, o.Root, libvirtdTCPSocket)
		}, msg: "libvirtd-tcp.socket is enabled"},
		{name: "libvirtd-tcp.socket active", spoil: func(t *testing.T, o *Config) {
			o.Units = fakeUnits{libvirtdTCPSocket: {Exists: true, Active: true}}
		}, msg: "libvirtd-tcp.socket is active"},
		{name: "libvirtd-tcp.socket masked but still listening", spoil: func(t *testing.T, o *Config) {
			o.Units = fakeUnits{libvirtdTCPSocket: {Exists: true, Masked: true, Active: true}}
		}, msg: "libvirtd-tcp.socket is active"},
		{name: "unit state unknown", spoil: func(t *testing.T, o *Config) {
			o.Units = brokenUnits{}
		}, msg: "cannot tell whether libvirtd-tcp.socket is open: systemd unreachable"},
		{name: "listen_tcp on", spoil: func(t *testing.T, o *Config) {
			editConf(t, o, LibvirtdConfPath, libvirtconf.Setting{Key: "listen_tcp", Value: libvirtconf.IntValue(1)})
		}, msg: "listen_tcp is on"},
		{name: `auth_tcp "none"`, spoil: func(t *testing.T, o *Config) {
			editConf(t, o, LibvirtdConfPath, libvirtconf.Setting{Key: "auth_tcp", Value: libvirtconf.StringValue("none")})
		}, msg: `auth_tcp = "none"`},
		{name: "tls_no_verify_certificate", spoil: func(t *testing.T, o *Config) {
			editConf(t, o, LibvirtdConfPath, libvirtconf.Setting{Key: "tls_no_verify_certificate", Value: libvirtconf.IntValue(1)})
		}, msg: "tls_no_verify_certificate is on"},
		{name: "tls_no_sanity_certificate", spoil: func(t *testing.T, o *Config) {
			editConf(t, o, LibvirtdConfPath, libvirtconf.Setting{Key: "tls_no_sanity_certificate", Value: libvirtconf.IntValue(1)})
		}, msg: "tls_no_sanity_certificate is on"},
		{name: "tls_priority with TLS 1.0", spoil: func(t *testing.T, o *Config) {
			editConf(t, o, LibvirtdConfPath, libvirtconf.Setting{Key: "tls_priority", Value: libvirtconf.StringValue("NORMAL:+VERS-TLS1.0")})
		}, msg: "+VERS-TLS1.0"},
		{name: "tls_priority NONE", spoil: func(t *testing.T, o *Config) {
			editConf(t, o, LibvirtdConfPath, libvirtconf.Setting{Key: "tls_priority", Value: libvirtconf.StringValue("NONE:+VERS-TLS1.2:+AES-256-GCM")})
		}, msg: `base "NONE"`},
		{name: "qemu.conf migrate_tls_x509_verify = 0", spoil: func(t *testing.T, o *Config) {
			editConf(t, o, QEMUConfPath, libvirtconf.Setting{Key: "migrate_tls_x509_verify", Value: libvirtconf.IntValue(0)})
		}, msg: "migrate_tls_x509_verify = 0: QEMU accepts clients without a certificate"},
		{name: "qemu.conf weak migrate_tls_priority", spoil: func(t *testing.T, o *Config) {
			editConf(t, o, QEMUConfPath, libvirtconf.Setting{Key: "migrate_tls_priority", Value: libvirtconf.StringValue("NORMAL:%VERIFY_ALLOW_BROKEN")})
		}, msg: "%VERIFY_ALLOW_BROKEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &Config{LookupGroup: fakeGroups, Root: newRoot(t)}
			plan, err := NewPlan(t.Context(), creds, o)
			require.NoError(t, err)
			require.NoError(t, plan.Apply(t.Context(), nil))
			require.True(t, CheckHost(t.Context(), o, nil).Secured, "secured before the spoiling")
			tc.spoil(t, o)
			st := CheckHost(t.Context(), o, nil)
			assert.False(t, st.Secured)
			assert.ErrorIs(t, st.Err(), ErrInsecureConfig)
			assert.ErrorContains(t, st.Err(), tc.msg)
		})
	}
}

// TestPlanClosesTCPSocket: when libvirtd-tcp.socket is enabled or
// listening, the plan stops, disables and masks it and restarts libvirtd
// (which keeps serving an fd it was handed until it restarts), even when
// no file changes; auth_tcp is not written.
func TestPlanClosesTCPSocket(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	commands := func(p *Plan) []string {
		var out []string
		for _, a := range p.Actions {
			out = append(out, strings.Join(a.Command, " "))
		}
		return out
	}
	closeTCP := []string{"systemctl disable --now libvirtd-tcp.socket", "systemctl mask libvirtd-tcp.socket"}
	for _, tc := range []struct {
		name  string
		units Units
		setup func(t *testing.T, root string)
		want  []string
	}{
		{name: "socket-activated, tcp enabled in the root's unit files", setup: func(t *testing.T, root string) {
			enableUnit(t, root, libvirtdTCPSocket)
			enableUnit(t, root, libvirtdTLSSocket)
		}, want: append(append([]string{}, closeTCP...), "systemctl stop libvirtd.service",
			"systemctl enable --now libvirtd-tls.socket", "systemctl start libvirtd.service")},
		{name: "tcp active, no socket units", units: fakeUnits{libvirtdTCPSocket: {Exists: true, Active: true}},
			want: append(closeTCP, "systemctl restart libvirtd.service")},
		{name: "tcp masked and inactive", units: fakeUnits{libvirtdTCPSocket: {Exists: true, Masked: true, Enabled: true}},
			want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &Config{LookupGroup: fakeGroups, Root: newRoot(t)}
			first, err := NewPlan(t.Context(), creds, o)
			require.NoError(t, err)
			require.NoError(t, first.Apply(t.Context(), nil))
			assert.NotContains(t, string(readFile(t, o.DiskPath(LibvirtdConfPath))), "\nauth_tcp", "auth_tcp is left alone")
			if tc.setup != nil {
				tc.setup(t, o.Root)
			}
			o.Units = tc.units
			plan, err := NewPlan(t.Context(), creds, o)
			require.NoError(t, err)
			assert.Empty(t, plan.Changes)
			assert.Equal(t, tc.want, commands(plan))
		})
	}
}

// TestPlanUndoesInsecureSettings: the plan forces the certificate checks
// on and puts auth_tcp = "none" (which earlier versions wrote) back to
// "sasl"; a weak tls_priority it does not own is refused, unless the
// caller overrides it.
func TestPlanUndoesInsecureSettings(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	o := &Config{LookupGroup: fakeGroups, Root: newRoot(t)}
	editConf(t, o, LibvirtdConfPath,
		libvirtconf.Setting{Key: "tls_no_verify_certificate", Value: libvirtconf.IntValue(1)},
		libvirtconf.Setting{Key: "tls_no_sanity_certificate", Value: libvirtconf.IntValue(1)},
		libvirtconf.Setting{Key: "auth_tcp", Value: libvirtconf.StringValue("none")})
	plan, err := NewPlan(t.Context(), creds, o)
	require.NoError(t, err)
	require.NoError(t, plan.Apply(t.Context(), nil))
	conf, err := libvirtconf.Parse(readFile(t, o.DiskPath(LibvirtdConfPath)))
	require.NoError(t, err)
	for key, want := range map[string]libvirtconf.Value{
		"tls_no_verify_certificate": libvirtconf.IntValue(0),
		"tls_no_sanity_certificate": libvirtconf.IntValue(0),
		"auth_tcp":                  libvirtconf.StringValue("sasl"),
	} {
		got, ok := conf.Get(key)
		assert.True(t, ok && got.Equal(want), "%s = %s, want %s", key, got, want)
	}
	assert.True(t, CheckHost(t.Context(), o, nil).Secured)

	editConf(t, o, LibvirtdConfPath, libvirtconf.Setting{Key: "tls_priority", Value: libvirtconf.StringValue("NORMAL:+VERS-TLS1.1")})
	_, err = NewPlan(t.Context(), creds, o)
	assert.ErrorIs(t, err, ErrInsecureConfig)
	assert.ErrorContains(t, err, "+VERS-TLS1.1")
	o.ExtraLibvirtd = []libvirtconf.Setting{{Key: "tls_priority", Value: libvirtconf.StringValue("NORMAL:-VERS-TLS1.1:-VERS-TLS1.0")}}
	_, err = NewPlan(t.Context(), creds, o)
	assert.NoError(t, err, "an override the caller chose is planned")
	o.ExtraLibvirtd = []libvirtconf.Setting{{Key: "tls_no_verify_certificate", Value: libvirtconf.IntValue(1)}}
	_, err = NewPlan(t.Context(), creds, o)
	assert.ErrorIs(t, err, ErrInsecureConfig, "not even ExtraLibvirtd turns verification off")
}

// priorityCases are GnuTLS priority strings CheckPriority accepts (ok)
// or refuses; they also seed FuzzCheckPriority.
var priorityCases = []struct {
	priority string
	ok       bool
}{
	{"NORMAL", true},
	{"@SYSTEM", true},
	{"@LIBVIRT,SYSTEM", true},
	{"SECURE256:-VERS-TLS1.0:-VERS-TLS1.1", true},
	{"NORMAL:%SERVER_PRECEDENCE:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", true},
	{"NORMAL:+COMP-NULL", true},
	{"PFS:!VERS-TLS1.0", true},
	{"NORMAL:+VERS-TLS1.0", false},
	{"NORMAL:+VERS-TLS1.1", false},
	{"NORMAL:+VERS-SSL3.0", false},
	{"NORMAL:+VERS-ALL", false},
	{"normal:+vers-tls1.0", false},
	{"NONE:+VERS-TLS1.2:+AES-128-GCM:+ECDHE-RSA:+SIGN-ALL:+CURVE-ALL:+AEAD", false},
	{"LEGACY", false},
	{"", false},
	{"NORMAL:+ANON-ECDH", false},
	{"NORMAL:+NULL", false},
	{"NORMAL:+ARCFOUR-128", false},
	{"NORMAL:+3DES-CBC", false},
	{"NORMAL:+SIGN-RSA-MD5", false},
	{"NORMAL:%NO_EXTENSIONS", false},
	{"NORMAL:%COMPAT", false},
	{"NORMAL:%UNSAFE_RENEGOTIATION", false},
	{"NORMAL:%VERIFY_ALLOW_SIGN_WITH_SHA1", false},
	{"NORMAL:%VERIFY_DISABLE_CRL_CHECKS", false},
	{"NORMAL:%PROFILE_LOW", false},
	{"NORMAL:%NO_TICKETS", true},
}

func TestCheckPriority(t *testing.T) {
	for _, tc := range priorityCases {
		t.Run(tc.priority, func(t *testing.T) {
			err := CheckPriority(tc.priority)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

// TestQEMUGroupMissing: on a machine without libvirt (no libvirt-qemu
// group) a plan under a temporary root gives QEMU's keys the caller's
// group, and a plan for the real host is made (a dry run) but not
// applied, naming the package that creates the group (issue 10). The
// group database is injected: no result depends on the machine's groups.
func TestQEMUGroupMissing(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	t.Run("temporary root", func(t *testing.T) {
		o := &Config{LookupGroup: noGroups, Root: newRoot(t)}
		plan, err := NewPlan(t.Context(), creds, o)
		require.NoError(t, err)
		require.NoError(t, plan.Apply(t.Context(), nil))
		fi, err := os.Stat(o.DiskPath(QEMUDir + "/" + QEMUServerKey))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o640), fi.Mode())
		assert.Equal(t, os.Getegid(), statGID(t, fi), "the caller's group")
		assert.True(t, CheckHost(t.Context(), o, nil).Secured)
	})
	t.Run("real host", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("as non-root no group is looked up: the plan is a dry run owned by the caller")
		}
		looked := ""
		o := &Config{Root: "/", LookupGroup: func(name string) (*user.Group, error) {
			looked = name
			return nil, user.UnknownGroupError(name)
		}, Units: fakeUnits{}}
		plan, err := NewPlan(t.Context(), creds, o)
		if err != nil {
			require.NotErrorIs(t, err, ErrQEMUGroupMissing, "the group matters only when the plan is applied")
			// Planning reads this machine's /etc/libvirt (nothing is
			// written); a file there that cannot be planned is not this
			// test's business.
			t.Skipf("this machine's /etc/libvirt cannot be planned: %v", err)
		}
		assert.Equal(t, "libvirt-qemu", looked)
		assert.Contains(t, plan.Diff(), "install libvirt-daemon-system")
		assert.Contains(t, plan.Diff(), "Apply refuses this plan")
		// Should Apply not refuse, let it write under a temporary root
		// rather than the machine's /etc (it then fails as stale).
		plan.root = t.TempDir()
		err = plan.Apply(t.Context(), nil)
		require.ErrorIs(t, err, ErrQEMUGroupMissing)
		assert.ErrorContains(t, err, `"libvirt-qemu"`)
		assert.ErrorContains(t, err, "install libvirt-daemon-system")
	})
	t.Run("found", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("ownership is resolved only as root")
		}
		o := &Config{LookupGroup: fakeGroups, Root: newRoot(t)}
		plan, err := NewPlan(t.Context(), creds, o)
		require.NoError(t, err)
		for _, ch := range plan.Changes {
			if ch.Path == QEMUDir+"/"+QEMUClientKey {
				assert.Equal(t, "root:libvirt-qemu", ch.Owner)
			}
		}
	})
}

func statGID(t *testing.T, fi os.FileInfo) int {
	t.Helper()
	st, ok := fi.Sys().(*syscall.Stat_t)
	require.True(t, ok)
	return int(st.Gid)
}

// TestSystemctlUnits runs Systemctl against a fake systemctl on PATH,
// which prints what systemd prints (and exits non-zero for "disabled"
// and "inactive", as systemctl does).
func TestSystemctlUnits(t *testing.T) {
	bin := t.TempDir()
	script := `#!/bin/sh
case "$1 $3" in
"is-enabled on.socket") echo enabled ;;
"is-active on.socket") echo active ;;
"is-enabled off.socket") echo disabled; exit 1 ;;
"is-active off.socket") echo inactive; exit 3 ;;
"is-enabled masked.socket") echo masked; exit 1 ;;
"is-active masked.socket") echo inactive; exit 3 ;;
"is-enabled gone.socket") echo not-found; exit 4 ;;
"is-active gone.socket") echo inactive; exit 4 ;;
*) echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2; exit 1 ;;
esac
`
	require.NoError(t, os.WriteFile(filepath.Join(bin, "systemctl"), []byte(script), 0o755))
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, tc := range []struct {
		unit string
		want UnitState
		err  string
	}{
		{unit: "on.socket", want: UnitState{Exists: true, Enabled: true, Active: true}},
		{unit: "off.socket", want: UnitState{Exists: true}},
		{unit: "masked.socket", want: UnitState{Exists: true, Masked: true}},
		{unit: "gone.socket", want: UnitState{}},
		{unit: "x.socket", err: "has not been booted with systemd"},
	} {
		t.Run(tc.unit, func(t *testing.T) {
			got, err := Systemctl{}.UnitState(t.Context(), tc.unit)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// FuzzCheckPriority: any string is judged without a panic, and no string
// that adds a protocol below TLS 1.2 or an anonymous suite is accepted.
func FuzzCheckPriority(f *testing.F) {
	for _, tc := range priorityCases {
		f.Add(tc.priority)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckPriority(s) != nil {
			return
		}
		for _, item := range strings.Split(strings.ToUpper(s), ":") {
			item = strings.TrimSpace(item)
			for _, weak := range []string{"+VERS-TLS1.0", "+VERS-TLS1.1", "+VERS-SSL3.0", "+ANON-", "%VERIFY_ALLOW", "%NO_EXTENSIONS"} {
				assert.False(t, strings.HasPrefix(item, weak), "accepted %q", s)
			}
		}
	})
}
