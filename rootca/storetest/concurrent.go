package storetest

import (
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// workers is how many goroutines the concurrent subtests run, as a busy
// CA serves several API calls at once.
const workers = 8

// startTogether runs f(w) for w in [0, workers) in goroutines released at
// once, and waits for them.
func startTogether(f func(w int)) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		ready.Add(1)
		done.Go(func() {
			ready.Done()
			<-start
			f(w)
		})
	}
	ready.Wait()
	close(start)
	done.Wait()
}

func testNextCRLNumberConcurrent(t *testing.T, s rootca.Store) {
	const perWorker = 16
	got := make([][]int64, workers)
	errs := make([]error, workers)
	startTogether(func(w int) {
		for range perWorker {
			n, err := s.NextCRLNumber(t.Context())
			if err != nil {
				errs[w] = err
				return
			}
			got[w] = append(got[w], n.Int64())
		}
	})
	require.NoError(t, errors.Join(errs...))

	seen := map[int64]int{}
	for w, numbers := range got {
		for i := 1; i < len(numbers); i++ {
			assert.Greater(t, numbers[i], numbers[i-1], "worker %d: numbers must increase", w)
		}
		for _, n := range numbers {
			seen[n]++
		}
	}
	for n := int64(1); n <= workers*perWorker; n++ {
		assert.Equal(t, 1, seen[n], "CRL number %d handed out %d times", n, seen[n])
	}
	assert.Len(t, seen, workers*perWorker, "numbers outside 1 to %d", workers*perWorker)

	n, err := s.NextCRLNumber(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(workers*perWorker+1), n.Int64())
}

// testConcurrentAddAndRevoke has every worker issue certificates of its
// own and revoke half of them, while all race to add one shared serial and
// to revoke another: exactly one worker must win each race.
func testConcurrentAddAndRevoke(t *testing.T, s rootca.Store) {
	const perWorker = 12
	shared := record(big.NewInt(0x5ea7), base)
	contested := record(big.NewInt(0xc0de), base)
	addAll(t, s, contested)

	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	var addWins, addLosses, revokeWins, revokeLosses int
	count := func(n *int) {
		mu.Lock()
		defer mu.Unlock()
		*n++
	}
	startTogether(func(w int) {
		switch err := s.AddCertificate(t.Context(), record(shared.Serial, base.Add(time.Duration(w)))); {
		case err == nil:
			count(&addWins)
		case errors.Is(err, rootca.ErrDuplicateSerial):
			count(&addLosses)
		default:
			fail(err)
		}
		for i := range perWorker {
			rec := record(big.NewInt(int64(0x10000+w*0x100+i)), base.Add(time.Duration(i)*time.Hour))
			if err := s.AddCertificate(t.Context(), rec); err != nil {
				fail(errors.Join(errors.New(describe(w, i)), err))
				continue
			}
			if i%2 == 1 {
				if _, err := s.Revoke(t.Context(), rec.Serial, provider.ReasonSuperseded, base); err != nil {
					fail(errors.Join(errors.New(describe(w, i)), err))
				}
			}
			if _, err := s.Certificate(t.Context(), rec.Serial); err != nil {
				fail(errors.Join(errors.New(describe(w, i)), err))
			}
		}
		switch _, err := s.Revoke(t.Context(), contested.Serial, provider.ReasonKeyCompromise, base); {
		case err == nil:
			count(&revokeWins)
		case errors.Is(err, provider.ErrAlreadyRevoked):
			count(&revokeLosses)
		default:
			fail(err)
		}
		if _, err := s.ListCertificates(t.Context(), nil); err != nil {
			fail(err)
		}
	})
	require.NoError(t, errors.Join(errs...))
	assert.Equal(t, 1, addWins, "AddCertificate of one serial from %d workers: successes", workers)
	assert.Equal(t, workers-1, addLosses, "AddCertificate of one serial from %d workers: ErrDuplicateSerial", workers)
	assert.Equal(t, 1, revokeWins, "Revoke of one serial from %d workers: successes", workers)
	assert.Equal(t, workers-1, revokeLosses, "Revoke of one serial from %d workers: ErrAlreadyRevoked", workers)

	all, err := s.ListCertificates(t.Context(), nil)
	require.NoError(t, err)
	assert.Len(t, all, workers*perWorker+2)
	revs, err := s.Revocations(t.Context())
	require.NoError(t, err)
	assert.Len(t, revs, workers*perWorker/2+1)
	for i := 1; i < len(revs); i++ {
		assert.Negative(t, revs[i-1].Serial.Cmp(revs[i].Serial), "revocations in increasing serial order")
	}
}
