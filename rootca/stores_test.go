package rootca_test

import (
	"context"
	"crypto"
	"math/big"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/mysql"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/postgres"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
	"github.com/kvmpki/kvmpki/rootca/storetest"
)

// A backend is one kind of Store and how tests get one: every store test
// that is not about one kind runs over all of them.
type backend struct {
	name string
	// database returns the location of a new, empty database, or skips
	// the test (fails it under KVMPKI_INTEROP=require) when the server
	// is missing. Empty for the memory store.
	database func(t *testing.T) string
	open     func(ctx context.Context, location string) (rootca.Store, error)
}

var backends = []backend{
	{
		name: "memory",
	},
	{
		name:     "sqlite",
		database: func(t *testing.T) string { return filepath.Join(t.TempDir(), "ca.db") },
		open: func(ctx context.Context, path string) (rootca.Store, error) {
			return sqlite.Open(ctx, path)
		},
	},
	{
		name:     "postgresql",
		database: func(t *testing.T) string { return peers.PostgresDatabase(t) },
		open: func(ctx context.Context, url string) (rootca.Store, error) {
			return postgres.Open(ctx, url)
		},
	},
	{
		name:     "mariadb",
		database: func(t *testing.T) string { return peers.MySQLDatabase(t) },
		open: func(ctx context.Context, dsn string) (rootca.Store, error) {
			return mysql.Open(ctx, dsn)
		},
	},
}

// sharedMemStore is a second handle on a MemStore, as Reopen gives for the
// memory backend: closing it leaves the store open.
type sharedMemStore struct{ *rootca.MemStore }

func (sharedMemStore) Close() error { return nil }

// stores opens new stores of one backend and remembers where, so that
// reopen can open another store on the same database.
type stores struct {
	b         backend
	mu        sync.Mutex
	locations map[rootca.Store]string
}

func newStores(b backend) *stores {
	return &stores{b: b, locations: map[rootca.Store]string{}}
}

func (ss *stores) new(t *testing.T) rootca.Store {
	t.Helper()
	if ss.b.open == nil {
		return rootca.NewMemStore()
	}
	loc := ss.b.database(t)
	s, err := ss.b.open(t.Context(), loc)
	require.NoError(t, err)
	ss.mu.Lock()
	ss.locations[s] = loc
	ss.mu.Unlock()
	return s
}

func (ss *stores) reopen(t *testing.T, s rootca.Store) rootca.Store {
	t.Helper()
	if m, ok := s.(*rootca.MemStore); ok {
		return sharedMemStore{m}
	}
	ss.mu.Lock()
	loc, ok := ss.locations[s]
	ss.mu.Unlock()
	require.True(t, ok, "reopen of a store stores.new did not open")
	other, err := ss.b.open(t.Context(), loc)
	require.NoError(t, err)
	return other
}

// TestStores runs the store contract suite over every backend, with two
// stores sharing each database.
func TestStores(t *testing.T) {
	// The Rotation subtests make and decrypt several encrypted CA keys.
	t.Cleanup(rootca.SetKeyIterations(minTestKeyIterations))
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ss := newStores(b)
			storetest.Run(t, ss.new, &storetest.Options{Reopen: ss.reopen})
		})
	}
}

// listingStore counts the calls that read certificate records.
type listingStore struct {
	*rootca.MemStore
	reads int
}

func (s *listingStore) ListCertificates(ctx context.Context, opts *provider.ListOptions) ([]*provider.CertificateRecord, error) {
	s.reads++
	return s.MemStore.ListCertificates(ctx, opts)
}

func (s *listingStore) Certificate(ctx context.Context, serial *big.Int) (*provider.CertificateRecord, error) {
	s.reads++
	return s.MemStore.Certificate(ctx, serial)
}

// TestOpenReadsNoRecords checks that opening a CA reads its revocations,
// not its inventory: a store of a million certificates must not be held
// in memory (BenchmarkOpenLarge measures the time and heap).
func TestOpenReadsNoRecords(t *testing.T) {
	s := &listingStore{MemStore: rootca.NewMemStore()}
	signer := genKey(t, "p256")
	ca, err := rootca.Create(t.Context(), s, &rootca.CreateOptions{Options: rootca.Options{Signer: signer}})
	require.NoError(t, err)
	for range 5 {
		issue(t, ca, &provider.IssueRequest{Role: provider.RoleClient, CommonName: "proxy", KeyAlgorithm: provider.KeyAlgorithmECDSA})
	}
	require.NoError(t, ca.Close())
	s.reads = 0
	ca, err = rootca.Open(t.Context(), s, &rootca.Options{Signer: signer})
	require.NoError(t, err)
	defer ca.Close()
	require.NoError(t, ca.Refresh(t.Context()))
	assert.Zero(t, s.reads, "Open and Refresh read no certificate records")
}

// TestCreateRace is issue 11, item 12: several servers running Create on
// one database at once, each through its own store (its own connections),
// as at a cluster's first start. Exactly one creates the CA; the others
// get ErrAuthorityExists and create nothing, and every server then opens
// the winner's CA.
func TestCreateRace(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ss := newStores(b)
			first := ss.new(t)
			t.Cleanup(func() { first.Close() })
			const n = 4
			stores := []rootca.Store{first}
			for len(stores) < n {
				s := ss.reopen(t, first)
				t.Cleanup(func() { s.Close() })
				stores = append(stores, s)
			}
			keys := make([]crypto.Signer, n)
			for i := range keys {
				keys[i] = genKey(t, "p256")
			}
			cas := make([]*rootca.CA, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					cas[i], errs[i] = rootca.Create(t.Context(), stores[i], &rootca.CreateOptions{
						Options: rootca.Options{Signer: keys[i], RevocationPollInterval: -1}})
				})
			}
			wg.Wait()
			winner := -1
			for i, err := range errs {
				if err == nil {
					require.Equal(t, -1, winner, "Create %d and %d both succeeded", winner, i)
					winner = i
					t.Cleanup(func() { cas[i].Close() })
					continue
				}
				assert.ErrorIs(t, err, rootca.ErrAuthorityExists, "Create %d", i)
				assert.Nil(t, cas[i])
			}
			require.NotEqual(t, -1, winner, "no Create succeeded")
			for i, s := range stores {
				auth, err := s.LoadAuthority(t.Context())
				require.NoError(t, err)
				assert.Equal(t, cas[winner].Certificate().Raw, auth.Certificates[0], "store %d holds the winner's CA", i)
				ca, err := rootca.Open(t.Context(), s, &rootca.Options{Signer: keys[winner], RevocationPollInterval: -1})
				require.NoError(t, err, "server %d opens the CA", i)
				require.NoError(t, ca.Close())
			}
		})
	}
}
