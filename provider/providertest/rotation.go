package providertest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// testRotationLeaser checks provider.RotationLeaser, if implemented: one
// holder at a time, renewal by the holder only, PushPending under the
// lease only, release, and exactly one of concurrent claims winning. A
// provider whose ClaimCARotation returns errors.ErrUnsupported (its
// store keeps no lease) skips them.
func (s *suite) testRotationLeaser(t *testing.T, p provider.Provider) {
	l, ok := p.(provider.RotationLeaser)
	if !ok {
		t.Skip("provider does not implement provider.RotationLeaser")
	}
	a, b := s.name("driver-a"), s.name("driver-b")
	err := l.ClaimCARotation(t.Context(), a, time.Minute)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("provider keeps no rotation lease: %v", err)
	}
	require.NoError(t, err, "claim of a free lease")
	require.NoError(t, l.ReleaseCARotation(t.Context(), a))

	s.run(t, "Exclusive", func(t *testing.T) {
		ctx := t.Context()
		require.NoError(t, l.ClaimCARotation(ctx, a, time.Minute))
		err := l.ClaimCARotation(ctx, b, time.Minute)
		var busy *provider.RotationBusyError
		if assert.ErrorAs(t, err, &busy, "a claim of a held lease") {
			assert.ErrorIs(t, err, provider.ErrRotationBusy)
			assert.Equal(t, a, busy.Holder, "the refusal names the holder")
			assert.True(t, busy.Until.After(time.Now()), "until a time to come")
		}
		require.NoError(t, l.ClaimCARotation(ctx, a, time.Minute), "renewal by the holder")
		assert.ErrorIs(t, l.SetCARotationPushPending(ctx, b, true), provider.ErrRotationBusy, "PushPending by a non-holder")
		require.NoError(t, l.SetCARotationPushPending(ctx, a, true))
		st, err := l.CARotationStatus(ctx)
		require.NoError(t, err)
		assert.True(t, st.PushPending)
		if assert.NotNil(t, st.Lease, "the status reports the lease") {
			assert.Equal(t, a, st.Lease.Holder)
		}
		require.NoError(t, l.SetCARotationPushPending(ctx, a, false))
		require.NoError(t, l.ReleaseCARotation(ctx, b), "a non-holder's release does nothing")
		assert.ErrorIs(t, l.ClaimCARotation(ctx, b, time.Minute), provider.ErrRotationBusy, "still held after a non-holder's release")
		require.NoError(t, l.ReleaseCARotation(ctx, a))
		require.NoError(t, l.ClaimCARotation(ctx, b, time.Minute), "a released lease is free")
		assert.ErrorIs(t, l.ClaimCARotation(ctx, a, time.Minute), provider.ErrRotationBusy, "the former holder cannot renew")
		require.NoError(t, l.ReleaseCARotation(ctx, b))
		st, err = l.CARotationStatus(ctx)
		require.NoError(t, err)
		assert.Nil(t, st.Lease, "no lease after release")
		assert.False(t, st.PushPending)
	})
	s.run(t, "Concurrent", func(t *testing.T) {
		const claimers = 16
		var (
			mu      sync.Mutex
			winners []string
			wg      sync.WaitGroup
		)
		start := make(chan struct{})
		for i := range claimers {
			holder := s.name(fmt.Sprintf("claimer%d", i))
			wg.Go(func() {
				<-start
				err := l.ClaimCARotation(t.Context(), holder, time.Minute)
				if err != nil && !errors.Is(err, provider.ErrRotationBusy) {
					assert.NoError(t, err, holder)
				}
				if err == nil {
					mu.Lock()
					winners = append(winners, holder)
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		require.Len(t, winners, 1, "exactly one of %d concurrent claims wins", claimers)
		require.NoError(t, l.ReleaseCARotation(t.Context(), winners[0]))
	})
}
