// Package storetest is the contract test suite for implementations of
// rootca.Store, in the manner of testing/fstest.TestFS and
// provider/providertest.
//
// An implementation proves itself with one test:
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) rootca.Store {
//			s, err := mystore.Open(t.Context(), filepath.Join(t.TempDir(), "ca.db"))
//			require.NoError(t, err)
//			return s
//		}, nil)
//	}
//
// Run checks, in named subtests, what the rootca.Store documentation
// promises: the single CA and ErrAuthorityExists, the round trip of every
// field of a certificate record, ErrDuplicateSerial, provider.ErrNotFound
// and provider.ErrAlreadyRevoked with the first state left unchanged, the
// order and filters of listings, CRL numbers that start at 1 and never
// repeat under concurrent callers, concurrent issuance and revocation,
// copies rather than shared state, cancelled contexts and ErrStoreClosed
// after Close. Stores that implement rootca.RevocationFeed get its
// subtests too (revocations in commit order, each once, under concurrent
// revokers), and stores that implement rootca.RotationStore the Rotation
// subtests (generations round-trip, one rotation at a time, exactly one
// of concurrent AddGeneration calls wins), and stores that implement
// rootca.RotationLeaseStore the lease subtests (claims, renewals,
// expiry and takeover, releases, PushPending under the lease only, a
// refusal under an expired lease naming nobody, holders compared byte
// for byte, and exactly one of 32 concurrent claims winning). With Options.Reopen, which opens a second store on the same
// database, the Shared subtests check what a cluster of management servers
// relies on: one CA, serials unique and CRL numbers increasing across the
// two stores, and a revocation made through a CA on one store refused by a
// CA on the other within PropagationLimit (one second), and of two CAs
// beginning a rotation at once exactly one succeeding, the other picking
// the successor up, and a retirement through one seen by the other, each
// within PropagationLimit, and of claims of the rotation lease through
// both stores at once exactly one winning. kvmpki runs it over
// MemStore and sqlstore.Store on SQLite, PostgreSQL and MariaDB.
//
// Run the suite with -race: several subtests exist to give the race
// detector something to find.
//
// Times are compared with time.Time.Equal, IP addresses with net.IP.Equal
// and empty lists as empty, so that stores may normalize locations, IPv4
// forms and nil slices.
//
// The suite uses no real certificates: records carry placeholder DER bytes,
// which stores must keep without parsing.
package storetest
