package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// leaseTest runs f for stores that implement rootca.RotationLeaseStore.
func leaseTest(f func(t *testing.T, s rootca.RotationLeaseStore)) func(t *testing.T, s rootca.Store) {
	return withCapability(f)
}

// assertBusy checks that err is a *provider.RotationBusyError naming
// holder until until.
func assertBusy(t *testing.T, err error, holder string, until time.Time, msg string) {
	t.Helper()
	var busy *provider.RotationBusyError
	if assert.ErrorAs(t, err, &busy, msg) {
		assert.ErrorIs(t, err, rootca.ErrRotationBusy, msg)
		assert.Equal(t, holder, busy.Holder, msg)
		assertTime(t, until, busy.Until, msg+": Until")
	}
}

// testLeaseLifecycle walks the lease through claims, renewals, an expiry
// and a takeover, releases and PushPending.
func testLeaseLifecycle(t *testing.T, s rootca.RotationLeaseStore) {
	ctx := t.Context()
	l, err := s.RotationLease(ctx)
	require.NoError(t, err)
	assert.Equal(t, rootca.RotationLease{}, *l, "a new store's lease is free")

	t0, t1, t2 := base, base.Add(time.Minute), base.Add(2*time.Minute)
	require.NoError(t, s.ClaimRotation(ctx, "server-a", t0, t1))
	assertBusy(t, s.ClaimRotation(ctx, "server-b", t0.Add(30*time.Second), t2), "server-a", t1, "claim of an unexpired lease")
	assertBusy(t, s.SetRotationPushPending(ctx, "server-b", t0, true), "server-a", t1, "push pending by a non-holder")
	require.NoError(t, s.ClaimRotation(ctx, "server-a", t0.Add(30*time.Second), t2), "renewal by the holder")
	require.NoError(t, s.ClaimRotation(ctx, "server-a", t0.Add(30*time.Second), t2), "a renewal that changes nothing")
	require.NoError(t, s.SetRotationPushPending(ctx, "server-a", t0.Add(40*time.Second), true))
	require.NoError(t, s.SetRotationPushPending(ctx, "server-a", t0.Add(40*time.Second), true), "setting it again")
	l, err = s.RotationLease(ctx)
	require.NoError(t, err)
	assert.Equal(t, "server-a", l.Holder)
	assertTime(t, t2, l.Until, "renewed Until")
	assert.True(t, l.PushPending)

	assertBusy(t, s.ClaimRotation(ctx, "server-b", t1, t2.Add(time.Minute)), "server-a", t2, "the renewed lease holds past the first expiry")
	assertBusy(t, s.SetRotationPushPending(ctx, "server-a", t2, false), "", time.Time{}, "push pending under an expired lease: nobody holds it")
	t3 := t2.Add(time.Minute)
	require.NoError(t, s.ClaimRotation(ctx, "server-b", t2, t3), "takeover of an expired lease")
	assertBusy(t, s.ClaimRotation(ctx, "server-a", t2, t3), "server-b", t3, "renewal by the holder that lost it")
	require.NoError(t, s.ReleaseRotation(ctx, "server-a"), "release by a non-holder")
	l, err = s.RotationLease(ctx)
	require.NoError(t, err)
	assert.Equal(t, "server-b", l.Holder, "a non-holder's release changes nothing")
	assert.True(t, l.PushPending, "PushPending survives the takeover")
	require.NoError(t, s.SetRotationPushPending(ctx, "server-b", t2, false))
	require.NoError(t, s.SetRotationPushPending(ctx, "server-b", t2, true))
	require.NoError(t, s.ReleaseRotation(ctx, "server-b"))
	l, err = s.RotationLease(ctx)
	require.NoError(t, err)
	assert.Equal(t, rootca.RotationLease{PushPending: true}, *l, "released; PushPending kept")
	assertBusy(t, s.SetRotationPushPending(ctx, "server-b", t2, false), "", time.Time{}, "push pending after release")
	require.NoError(t, s.ClaimRotation(ctx, "server-c", t2, t3), "a released lease is free")

	for _, tc := range []struct {
		name, holder string
		now, until   time.Time
	}{
		{"empty holder", "", t0, t1},
		{"long holder", strings.Repeat("h", 256), t0, t1},
		{"control character", "server\nd", t0, t1},
		{"invalid UTF-8", "server-\xff", t0, t1},
		{"until before now", "server-d", t1, t0},
		{"zero now", "server-d", time.Time{}, t1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.ClaimRotation(ctx, tc.holder, tc.now, tc.until)
			require.Error(t, err)
			assert.NotErrorIs(t, err, rootca.ErrRotationBusy)
		})
	}
	require.NoError(t, s.ClaimRotation(ctx, strings.Repeat("é", 127), t3, t3.Add(time.Minute)), "a 254-byte UTF-8 holder")
}

// testLeaseHolderExact: a holder is its name byte for byte. A name that
// differs from the holder's only in case or in trailing spaces (which
// MariaDB's PAD SPACE collations ignore in comparisons) neither renews
// nor releases the lease, nor sets PushPending under it: it is another
// driver, refused, or a name the store refuses.
func testLeaseHolderExact(t *testing.T, s rootca.RotationLeaseStore) {
	ctx := t.Context()
	t0, t1 := base, base.Add(time.Minute)
	require.NoError(t, s.ClaimRotation(ctx, "server-a", t0, t1))
	for _, other := range []string{"server-a ", "server-a  ", "SERVER-A", "server-a\u00a0"} {
		t.Run(fmt.Sprintf("%q", other), func(t *testing.T) {
			err := s.ClaimRotation(ctx, other, t0.Add(time.Second), t1.Add(time.Minute))
			require.Error(t, err, "a claim by another name while the lease is held")
			if errors.Is(err, rootca.ErrRotationBusy) {
				assertBusy(t, err, "server-a", t1, "claim")
			}
			assert.Error(t, s.SetRotationPushPending(ctx, other, t0, true), "PushPending by another name")
			_ = s.ReleaseRotation(ctx, other)
			l, err := s.RotationLease(ctx)
			require.NoError(t, err)
			assert.Equal(t, rootca.RotationLease{Holder: "server-a", Until: l.Until}, *l, "the lease is unchanged")
			assertTime(t, t1, l.Until, "Until unchanged")
		})
	}
}

// claimers is how many goroutines claim the lease at once.
const claimers = 32

// claimTogether has claimers goroutines claim the lease at once, each
// under its own name (prefixed with round, so that no claim of a later
// round is a renewal), through the stores in turn; it returns the
// winners' names, failing the test on any error but ErrRotationBusy, and
// checks that every loser was told the winner's name.
func claimTogether(t *testing.T, round string, now, until time.Time, stores ...rootca.RotationLeaseStore) []string {
	var (
		mu      sync.Mutex
		winners []string
		busy    []string
		ready   sync.WaitGroup
		done    sync.WaitGroup
	)
	start := make(chan struct{})
	for w := range claimers {
		ready.Add(1)
		done.Go(func() {
			name := fmt.Sprintf("%s-server-%02d", round, w)
			ready.Done()
			<-start
			err := stores[w%len(stores)].ClaimRotation(t.Context(), name, now, until)
			var be *provider.RotationBusyError
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, name)
			case errors.As(err, &be):
				busy = append(busy, be.Holder)
			default:
				assert.NoError(t, err, "claimer %d", w)
			}
		})
	}
	ready.Wait()
	close(start)
	done.Wait()
	if len(winners) == 1 {
		for _, h := range busy {
			assert.Equal(t, winners[0], h, "a refused claim names the winner")
		}
	}
	return winners
}

// testLeaseConcurrent: of 32 claims at once, exactly one wins, on a free
// lease and on an expired one.
func testLeaseConcurrent(t *testing.T, s rootca.RotationLeaseStore) {
	winners := claimTogether(t, "free", base, base.Add(time.Minute), s)
	require.Len(t, winners, 1, "exactly one claim of a free lease wins")
	later := base.Add(2 * time.Minute)
	winners = claimTogether(t, "expired", later, later.Add(time.Minute), s)
	require.Len(t, winners, 1, "exactly one claim of an expired lease wins")
	l, err := s.RotationLease(t.Context())
	require.NoError(t, err)
	assert.Equal(t, winners[0], l.Holder)
}

// testSharedLease: claims at once through two stores on one database,
// as two management servers: exactly one wins, and the other store
// sees its lease.
func testSharedLease(t *testing.T, a, b rootca.Store) {
	la, ok := a.(rootca.RotationLeaseStore)
	if !ok {
		t.Skip("store does not implement rootca.RotationLeaseStore")
	}
	lb := b.(rootca.RotationLeaseStore)
	winners := claimTogether(t, "shared", base, base.Add(time.Minute), la, lb)
	require.Len(t, winners, 1, "exactly one claim wins across the two stores")
	for i, s := range []rootca.RotationLeaseStore{la, lb} {
		l, err := s.RotationLease(t.Context())
		require.NoError(t, err)
		assert.Equal(t, winners[0], l.Holder, "store %d", i)
	}
	require.NoError(t, la.ReleaseRotation(t.Context(), winners[0]))
	l, err := lb.RotationLease(t.Context())
	require.NoError(t, err)
	assert.Empty(t, l.Holder, "a release through one store frees the lease for the other")
}
