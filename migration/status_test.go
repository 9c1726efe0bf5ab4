package migration_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/libvirttls"
	"github.com/kvmpki/kvmpki/migration"
	"github.com/kvmpki/kvmpki/provider"
)

// TestHostFromStatus plans from libvirttls's detection of two hosts laid
// out under temporary roots: one secured by libvirttls, one left bare.
func TestHostFromStatus(t *testing.T) {
	ca := newCA(t, "kvmpki migration CA")
	kvm1 := ca.issue(t, "kvm1.example.org", provider.RoleHost, []string{"kvm1.example.org"}, nil, time.Hour)
	kvm2 := ca.issue(t, "kvm2.example.org", provider.RoleHost, []string{"kvm2.example.org"}, nil, time.Hour)
	root1, _ := securedHost(t, ca.bundle, kvm1, nil)
	root2, _ := securedHost(t, ca.bundle, kvm2, nil)
	bare := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(bare, "etc/libvirt"), 0o755))

	check := func(root string) *libvirttls.Status {
		return libvirttls.CheckHost(t.Context(), &libvirttls.Config{Root: root, RootedConfigPaths: true}, nil)
	}
	st1, st2, st3 := check(root1), check(root2), check(bare)
	require.True(t, st1.Secured, "%v", st1.Err())
	require.True(t, st2.Secured, "%v", st2.Err())
	require.False(t, st3.Secured)

	src := migration.HostFromStatus("kvm1", "10.0.0.1", st1)
	dst := migration.HostFromStatus("kvm2", "10.0.0.2", st2)
	assert.Equal(t, migration.StateSecured, src.State)
	assert.Equal(t, kvm2.cert.Raw, dst.Certificate.Raw)
	plan, err := migration.NewPlan(src, dst, nil)
	require.NoError(t, err)
	assert.Equal(t, migration.NativeTLS(), plan.Transport)
	assert.Equal(t, "kvm2.example.org", plan.TLSDestination, "the detected certificate lacks 10.0.0.2, so the plan names the certificate's host")

	unsecured := migration.HostFromStatus("kvm3", "10.0.0.3", st3)
	assert.Equal(t, migration.StateUnsecured, unsecured.State)
	assert.NotEmpty(t, unsecured.Reason)
	if len(st3.Reasons) > 3 {
		assert.Regexp(t, fmt.Sprintf("; and %d more$", len(st3.Reasons)-3), unsecured.Reason)
	}
	_, err = migration.NewPlan(src, unsecured, nil)
	var mismatch *migration.SecurityMismatchError
	require.ErrorAs(t, err, &mismatch)
	assert.Contains(t, err.Error(), "kvm3 (10.0.0.3, unsecured: "+unsecured.Reason+")")
	t.Log(err)

	unknown := migration.HostFromStatus("kvm4", "10.0.0.4", nil)
	_, err = migration.NewPlan(src, unknown, nil)
	assert.True(t, errors.Is(err, migration.ErrStateUnknown))
}

// TestHostFromStatusFailing: a secured host whose check fails is
// StateFailing, never StateUnsecured, and no plan is made for it in
// either direction, whatever InsecureAllowUnsecuredMigration says; two
// hosts never secured still migrate in clear with the knob.
func TestHostFromStatusFailing(t *testing.T) {
	ca := newCA(t, "kvmpki migration CA")
	kvm1 := ca.issue(t, "kvm1.example.org", provider.RoleHost, []string{"kvm1.example.org"}, nil, time.Hour)
	kvm2 := ca.issue(t, "kvm2.example.org", provider.RoleHost, []string{"kvm2.example.org"}, nil, time.Hour)
	revoked := ca.issue(t, "kvm3.example.org", provider.RoleHost, []string{"kvm3.example.org"}, nil, time.Hour)
	crl := ca.revoke(t, revoked)
	rootSecured, _ := securedHost(t, ca.bundle, kvm1, crl)
	// Secured before its revocation, which the installed CRL then lists.
	rootRevoked, _ := securedHost(t, ca.bundle, revoked, nil)
	require.NoError(t, os.WriteFile(filepath.Join(rootRevoked, libvirttls.CRLPath), crl, 0o644))
	rootExpiring, _ := securedHost(t, ca.bundle, kvm2, crl)
	bare := func() string {
		root := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(root, "etc/libvirt"), 0o755))
		return root
	}

	check := func(root string, now time.Time) *libvirttls.Status {
		return libvirttls.CheckHost(t.Context(), &libvirttls.Config{Root: root, RootedConfigPaths: true, LookupGroup: ownGroup,
			Time: func() time.Time { return now }}, nil)
	}
	now := time.Now()
	secured := migration.HostFromStatus("kvm1", "10.0.0.1", check(rootSecured, now))
	require.Equal(t, migration.StateSecured, secured.State, secured.Reason)
	tests := []struct {
		name  string
		root  string
		at    time.Time
		state migration.State
	}{
		{name: "revoked", root: rootRevoked, at: now, state: migration.StateFailing},
		{name: "expired", root: rootExpiring, at: now.Add(2 * time.Hour), state: migration.StateFailing},
		{name: "TLS configured, key removed", root: func() string {
			root, _ := securedHost(t, ca.bundle, kvm2, crl)
			require.NoError(t, os.Remove(filepath.Join(root, libvirttls.ServerKeyPath)))
			return root
		}(), at: now, state: migration.StateFailing},
		{name: "never secured", root: bare(), at: now, state: migration.StateUnsecured},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := check(tc.root, tc.at)
			require.False(t, st.Secured)
			h := migration.HostFromStatus("kvm9", "10.0.0.9", st)
			require.Equal(t, tc.state, h.State, "%v", st.Err())
			assert.NotEmpty(t, h.Reason)
			if tc.state != migration.StateFailing {
				return
			}
			for _, opts := range []*migration.PlanOptions{nil, {InsecureAllowUnsecuredMigration: true}} {
				_, err := migration.NewPlan(secured, h, opts)
				assert.ErrorIs(t, err, migration.ErrHostFailing, "to a failing host")
				_, err = migration.NewPlan(h, secured, opts)
				assert.ErrorIs(t, err, migration.ErrHostFailing, "from a failing host")
				other := h
				other.Address = "10.0.0.10"
				_, err = migration.NewPlan(h, other, opts)
				assert.ErrorIs(t, err, migration.ErrHostFailing, "between failing hosts: never qemu+tcp")
				assert.ErrorContains(t, err, "failing")
			}
		})
	}

	t.Run("two never-secured hosts with the knob", func(t *testing.T) {
		a := migration.HostFromStatus("kvm5", "10.0.0.5", check(bare(), now))
		b := migration.HostFromStatus("kvm6", "10.0.0.6", check(bare(), now))
		_, err := migration.NewPlan(a, b, nil)
		assert.ErrorIs(t, err, migration.ErrUnsecured)
		plan, err := migration.NewPlan(a, b, &migration.PlanOptions{InsecureAllowUnsecuredMigration: true})
		require.NoError(t, err)
		assert.Equal(t, migration.PlainTCP(), plan.Transport)
	})
}

// TestSentinelsAreShared: a revocation, expiry, unknown CA or name
// mismatch found by migration matches provider's sentinel.
func TestSentinelsAreShared(t *testing.T) {
	for _, tc := range []struct {
		name      string
		migration error
		provider  error
	}{
		{"revoked", migration.ErrRevoked, provider.ErrRevoked},
		{"expired", migration.ErrExpired, provider.ErrExpired},
		{"unknown authority", migration.ErrUnknownAuthority, provider.ErrUnknownAuthority},
		{"name mismatch", migration.ErrNameMismatch, provider.ErrNameMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Same(t, tc.provider, tc.migration)
		})
	}
}
