package sqlstore_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca/sqlstore"
)

// TestSetPushPendingRacesRenewal: SetRotationPushPending under a lease
// that expired, while the holder's own renewal lands between its UPDATE
// (which matched no row) and the read that follows (where MariaDB's
// count of changed rows sends it), must not report success: the read
// shows the holder's renewed lease, but PushPending was not written.
// It returns a *provider.RotationBusyError and PushPending stays as it
// was. Deterministic: the renewal runs inside the hook.
func TestSetPushPendingRacesRenewal(t *testing.T) {
	for _, md := range migrationDialects {
		t.Run(md.name, func(t *testing.T) {
			ctx := t.Context()
			s, err := md.open(ctx, md.database(t))
			require.NoError(t, err)
			defer s.Close()
			t0 := time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)
			require.NoError(t, s.ClaimRotation(ctx, "server-a", t0, t0.Add(time.Minute)))
			late := t0.Add(2 * time.Minute) // the lease expired
			renewed := false
			sqlstore.SetLeaseUpdateHook(t, func() {
				if !renewed {
					renewed = true
					require.NoError(t, s.ClaimRotation(ctx, "server-a", late, late.Add(time.Minute)))
				}
			})
			err = s.SetRotationPushPending(ctx, "server-a", late.Add(-time.Second), true)
			require.True(t, renewed, "the hook ran")
			var busy *provider.RotationBusyError
			assert.ErrorAs(t, err, &busy, "PushPending under an expired lease is refused")
			l, err := s.RotationLease(ctx)
			require.NoError(t, err)
			assert.False(t, l.PushPending, "nothing was written")
			assert.Equal(t, "server-a", l.Holder)
		})
	}
}
