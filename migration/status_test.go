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
		return libvirttls.CheckHost(t.Context(), &libvirttls.Options{Root: root, RootedConfigPaths: true}, nil)
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
