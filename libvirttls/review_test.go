package libvirttls

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/libvirtconf"
)

// TestPlanRefusesSymlinkedAncestors: a link anywhere between Root and a
// file the plan writes would put keys and configuration outside Root.
func TestPlanRefusesSymlinkedAncestors(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	for _, dir := range []string{"etc", "etc/libvirt", "etc/pki", "etc/pki/CA", "etc/pki/qemu", "etc/pki/libvirt/private"} {
		t.Run(dir, func(t *testing.T) {
			root := newRoot(t)
			outside := t.TempDir()
			d := filepath.Join(root, dir)
			require.NoError(t, os.MkdirAll(filepath.Dir(d), 0o755))
			require.NoError(t, os.RemoveAll(d))
			require.NoError(t, os.Symlink(outside, d))
			before := snapshot(t, root)
			opts := goldenConfig()
			opts.Root = root
			plan, err := NewPlan(t.Context(), creds, opts)
			if err == nil {
				err = plan.Apply(t.Context(), nil)
			}
			assert.Error(t, err, "a plan that writes through %s", dir)
			assert.Equal(t, before, snapshot(t, root))
			entries, err := os.ReadDir(outside)
			require.NoError(t, err)
			assert.Empty(t, entries, "nothing is written through the link")
		})
	}
}

// TestApplyRefusesLinkSwappedIn: a directory replaced by a link between
// NewPlan and Apply makes the plan stale instead of being written through.
func TestApplyRefusesLinkSwappedIn(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	root := newRoot(t)
	opts := goldenConfig()
	opts.Root = root
	plan, err := NewPlan(t.Context(), creds, opts)
	require.NoError(t, err)

	outside := t.TempDir()
	libvirtDir := filepath.Join(root, "etc/libvirt")
	require.NoError(t, os.CopyFS(outside, os.DirFS(libvirtDir)))
	require.NoError(t, os.RemoveAll(libvirtDir))
	require.NoError(t, os.Symlink(outside, libvirtDir))
	before := snapshot(t, outside)

	err = plan.Apply(t.Context(), nil)
	require.ErrorIs(t, err, ErrStalePlan)
	assert.Equal(t, before, snapshot(t, outside), "the files behind the link are untouched")
	assert.NoDirExists(t, filepath.Join(root, "etc/pki"), "nothing was applied")
}

// TestNilCredentials: a nil *Credentials is an error, not a panic.
func TestNilCredentials(t *testing.T) {
	var c *Credentials
	_, err := c.Verify(time.Now())
	assert.ErrorIs(t, err, ErrCredentialsMissing)
	dir := filepath.Join(t.TempDir(), "pki")
	assert.ErrorIs(t, WritePKIPath(t.Context(), dir, nil), ErrCredentialsMissing)
	assert.NoDirExists(t, dir)
}

// TestApplyReplacesLinkAtKeyPath: a link planted where a key goes is
// replaced by the key file; its target is not written.
func TestApplyReplacesLinkAtKeyPath(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	root := newRoot(t)
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("untouched"), 0o644))
	keyPath := filepath.Join(root, "etc/pki/qemu", QEMUServerKey)
	require.NoError(t, os.MkdirAll(filepath.Dir(keyPath), 0o750))
	require.NoError(t, os.Symlink(victim, keyPath))
	opts := goldenConfig()
	opts.Root = root
	plan, err := NewPlan(t.Context(), creds, opts)
	require.NoError(t, err)
	require.NoError(t, plan.Apply(t.Context(), nil))

	got, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "untouched", string(got))
	fi, err := os.Lstat(keyPath)
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular(), "the link was replaced by a file")
	assert.Equal(t, groupKeyMode, fi.Mode().Perm())
	data, err := os.ReadFile(keyPath)
	require.NoError(t, err)
	assert.Equal(t, creds.Key, data)
}

// TestCRLWithOtherBlocksRefused: the CRL is installed world-readable as
// given, so a file that also holds a key (or any non-CRL block) is
// refused before anything is planned.
func TestCRLWithOtherBlocksRefused(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	crl := ca.crl(t)
	for name, data := range map[string][]byte{
		"key after the CRL":  append(append([]byte{}, crl...), creds.Key...),
		"key before the CRL": append(append([]byte{}, creds.Key...), crl...),
	} {
		t.Run(name, func(t *testing.T) {
			c := *creds
			c.CRL = data
			root := newRoot(t)
			before := snapshot(t, root)
			opts := goldenConfig()
			opts.Root = root
			_, err := NewPlan(t.Context(), &c, opts)
			require.ErrorIs(t, err, ErrCredentialsInvalid)
			assert.ErrorContains(t, err, "PRIVATE KEY")
			assert.Equal(t, before, snapshot(t, root))
		})
	}
	c := *creds
	c.CRL = append(append([]byte{}, crl...), crl...)
	opts := goldenConfig()
	opts.Root = newRoot(t)
	_, err := NewPlan(t.Context(), &c, opts)
	assert.NoError(t, err, "several CRL blocks are fine")
}

func TestWritePKIPathRefusesKeyInCRL(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	c := *creds
	c.CRL = append(append([]byte{}, ca.crl(t)...), creds.Key...)
	dir := filepath.Join(t.TempDir(), "pki")
	assert.ErrorIs(t, WritePKIPath(t.Context(), dir, &c), ErrCredentialsInvalid)
	assert.NoDirExists(t, dir, "nothing written")
}

// TestNumericQEMUGroup: qemu.conf's group = "+GID" gives QEMU's keys that
// gid, not the default group's.
func TestNumericQEMUGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ownership is resolved only as root")
	}
	_, w, err := (&Config{}).owners("+4242")
	require.NoError(t, err)
	assert.Equal(t, 4242, w.gid)
	_, _, err = (&Config{}).owners("+x")
	assert.ErrorContains(t, err, "not a number")

	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	root := newRoot(t)
	opts := goldenConfig()
	opts.Root = root
	opts.ExtraQEMU = []libvirtconf.Setting{{Key: "group", Value: libvirtconf.StringValue("+4242")}}
	plan, err := NewPlan(t.Context(), creds, opts)
	require.NoError(t, err)
	require.NoError(t, plan.Apply(t.Context(), nil))
	for _, p := range []string{"etc/pki/qemu", "etc/pki/qemu/" + QEMUServerKey, "etc/pki/libvirt-vnc/" + QEMUServerKey} {
		fi, err := os.Lstat(filepath.Join(root, p))
		require.NoError(t, err)
		assert.Equal(t, uint32(4242), fi.Sys().(*syscall.Stat_t).Gid, p)
	}
}
