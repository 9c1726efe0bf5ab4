package storetest

import (
	"math/big"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// feedTest runs f on stores that are a rootca.RevocationFeed, and skips
// the others.
func feedTest(f func(t *testing.T, s rootca.RevocationFeed)) func(t *testing.T, s rootca.Store) {
	return func(t *testing.T, s rootca.Store) {
		feed, ok := s.(rootca.RevocationFeed)
		if !ok {
			t.Skipf("%T is not a rootca.RevocationFeed", s)
		}
		f(t, feed)
	}
}

// feedSerials returns the serials of revs as int64s, in their order.
func feedSerials(revs []rootca.Revocation) []int64 {
	out := make([]int64, len(revs))
	for i, r := range revs {
		out[i] = r.Serial.Int64()
	}
	return out
}

// revoke revokes serial, failing the test on error.
func revoke(t *testing.T, s rootca.Store, serial *big.Int) {
	t.Helper()
	_, err := s.Revoke(t.Context(), serial, provider.ReasonKeyCompromise, base)
	require.NoError(t, err, "Revoke(%s)", provider.FormatSerial(serial))
}

func testFeedAll(t *testing.T, s rootca.RevocationFeed) {
	revs, cursor, err := s.RevocationsSince(t.Context(), 0)
	require.NoError(t, err)
	assert.Empty(t, revs, "no revocations yet")

	recs := []*provider.CertificateRecord{record(serial(0x31), base), record(serial(0x32), base.Add(1)), record(serial(0x33), base.Add(2))}
	addAll(t, s, recs...)
	revoke(t, s, serial(0x33))
	revoke(t, s, serial(0x31))

	revs, next, err := s.RevocationsSince(t.Context(), 0)
	require.NoError(t, err)
	assert.ElementsMatch(t, []int64{0x31, 0x33}, feedSerials(revs), "cursor 0 returns every revocation")
	assert.Greater(t, next, cursor, "the cursor moves past the revocations")
	for _, r := range revs {
		i := slices.IndexFunc(recs, func(rec *provider.CertificateRecord) bool { return rec.Serial.Cmp(r.Serial) == 0 })
		require.GreaterOrEqual(t, i, 0)
		assertRevocation(t, recs[i], provider.ReasonKeyCompromise, base, r)
	}

	again, same, err := s.RevocationsSince(t.Context(), next)
	require.NoError(t, err)
	assert.Empty(t, again, "nothing after the last cursor")
	assert.Equal(t, next, same, "the cursor stays when nothing is new")
}

func testFeedSince(t *testing.T, s rootca.RevocationFeed) {
	for i := range 7 {
		addAll(t, s, record(serial(int64(0x40+i)), base))
	}
	revoke(t, s, serial(0x46))
	_, cursor, err := s.RevocationsSince(t.Context(), 0)
	require.NoError(t, err)
	require.NotZero(t, cursor, "the cursor after a revocation")

	// Revoked out of serial order: the feed returns commit order.
	order := []int64{0x44, 0x41, 0x45}
	for _, n := range order {
		revoke(t, s, serial(n))
	}
	revs, next, err := s.RevocationsSince(t.Context(), cursor)
	require.NoError(t, err)
	assert.Equal(t, order, feedSerials(revs), "revocations after the cursor, in the order they were made")

	_, err = s.Revoke(t.Context(), serial(0x44), provider.ReasonSuperseded, base)
	require.ErrorIs(t, err, provider.ErrAlreadyRevoked)
	_, err = s.Revoke(t.Context(), serial(0x4f), provider.ReasonSuperseded, base)
	require.ErrorIs(t, err, provider.ErrNotFound)
	revs, after, err := s.RevocationsSince(t.Context(), next)
	require.NoError(t, err)
	assert.Empty(t, revs, "failed revocations are not in the feed")
	assert.Equal(t, next, after)

	revoke(t, s, serial(0x40))
	revs, _, err = s.RevocationsSince(t.Context(), next)
	require.NoError(t, err)
	assert.Equal(t, []int64{0x40}, feedSerials(revs))
}

func testFeedUnknownCursor(t *testing.T, s rootca.RevocationFeed) {
	addAll(t, s, record(serial(0x51), base), record(serial(0x52), base))
	revoke(t, s, serial(0x52))
	// A cursor from the future, as a CA holds after its database was
	// restored from an older backup: start over rather than wait.
	revs, next, err := s.RevocationsSince(t.Context(), 1<<40)
	require.NoError(t, err)
	assert.Equal(t, []int64{0x52}, feedSerials(revs))
	assert.Less(t, next, int64(1<<40))
}

// testFeedConcurrent revokes from several goroutines while one follows
// the feed: when the revokers are done, the follower has seen each
// revocation, and none twice within its increments.
func testFeedConcurrent(t *testing.T, s rootca.RevocationFeed) {
	const perWorker = 6
	for w := range workers {
		for i := range perWorker {
			addAll(t, s, record(serial(int64(0x1000*(w+1)+i)), base))
		}
	}
	seen := map[int64]int{}
	var cursor int64
	follow := func() {
		revs, next, err := s.RevocationsSince(t.Context(), cursor)
		if !assert.NoError(t, err) {
			return
		}
		assert.GreaterOrEqual(t, next, cursor, "the cursor never goes back")
		for _, n := range feedSerials(revs) {
			seen[n]++
		}
		cursor = next
	}
	done := make(chan struct{})
	var follower sync.WaitGroup
	follower.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				follow()
			}
		}
	})
	startTogether(func(w int) {
		for i := range perWorker {
			_, err := s.Revoke(t.Context(), serial(int64(0x1000*(w+1)+i)), provider.ReasonKeyCompromise, base)
			assert.NoError(t, err, describe(w, i))
		}
	})
	close(done)
	follower.Wait()
	follow()
	assert.Len(t, seen, workers*perWorker, "every revocation seen")
	for n, c := range seen {
		assert.Equal(t, 1, c, "revocation %#x seen %d times", n, c)
	}
}
