package rootca_test

import (
	"bufio"
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// openTestSQLite opens an SQLStore on path, or on a new file if path is
// empty, and closes it at the end of the test.
func openTestSQLite(t testing.TB, path string) *sqlstore.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "ca.db")
	}
	s, err := sqlite.Open(t.Context(), path)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

// rawDB opens the database file directly, without the store, to inspect
// or damage it.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLStoreReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	auth := &rootca.Authority{Certificates: [][]byte{[]byte("ca der"), []byte("root der")}, Key: []byte("encrypted key")}
	revokedAt := time.Date(2029, 5, 6, 7, 8, 9, 10, time.UTC)

	s, err := sqlite.Open(t.Context(), path)
	require.NoError(t, err)
	require.NoError(t, s.CreateAuthority(t.Context(), auth))
	for i := int64(1); i <= 3; i++ {
		require.NoError(t, s.AddCertificate(t.Context(), storeRecord(big.NewInt(i))))
	}
	_, err = s.Revoke(t.Context(), big.NewInt(2), provider.ReasonKeyCompromise, revokedAt)
	require.NoError(t, err)
	for range 3 {
		_, err = s.NextCRLNumber(t.Context())
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())

	s = openTestSQLite(t, path)
	got, err := s.LoadAuthority(t.Context())
	require.NoError(t, err)
	assert.Equal(t, auth, got)
	list, err := s.ListCertificates(t.Context(), nil)
	require.NoError(t, err)
	assert.Len(t, list, 3)
	rec, err := s.Certificate(t.Context(), big.NewInt(2))
	require.NoError(t, err)
	assert.Equal(t, provider.StatusRevoked, rec.Status)
	assert.Equal(t, provider.ReasonKeyCompromise, rec.Reason)
	assert.True(t, revokedAt.Equal(rec.RevokedAt))
	revs, err := s.Revocations(t.Context())
	require.NoError(t, err)
	assert.Len(t, revs, 1)
	n, err := s.NextCRLNumber(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(4), n.Int64(), "the CRL number survives reopening")
	assert.ErrorIs(t, s.CreateAuthority(t.Context(), auth), rootca.ErrAuthorityExists)
}

func TestSQLStoreFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	s := openTestSQLite(t, path)
	require.NoError(t, s.AddCertificate(t.Context(), storeRecord(big.NewInt(1))))
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if errors.Is(err, fs.ErrNotExist) && name != path {
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), "mode of %s", filepath.Base(name))
	}
}

func TestSQLStoreExistingFileModeKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	require.NoError(t, os.WriteFile(path, nil, 0o640))
	require.NoError(t, os.Chmod(path, 0o640))
	openTestSQLite(t, path)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o640), fi.Mode().Perm())
}

func TestSQLStoreSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	versions := func() []int {
		t.Helper()
		rows, err := rawDB(t, path).QueryContext(t.Context(), `SELECT version FROM schema_version ORDER BY version`)
		require.NoError(t, err)
		defer rows.Close()
		var vs []int
		for rows.Next() {
			var v int
			require.NoError(t, rows.Scan(&v))
			vs = append(vs, v)
		}
		require.NoError(t, rows.Err())
		return vs
	}
	for i := range 3 {
		s, err := sqlite.Open(t.Context(), path)
		require.NoError(t, err, "open %d", i+1)
		require.NoError(t, s.AddCertificate(t.Context(), storeRecord(big.NewInt(int64(i+1)))))
		require.NoError(t, s.Close())
		assert.Equal(t, []int{1, 2, 3, 4}, versions(), "after open %d", i+1)
	}

	var mode string
	require.NoError(t, rawDB(t, path).QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode))
	assert.Equal(t, "wal", mode)
}

// TestSQLStoreTwoInstances has two stores on one file, as two processes
// would have, issue, revoke and number CRLs at once.
func TestSQLStoreTwoInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	stores := []*sqlstore.Store{openTestSQLite(t, path), openTestSQLite(t, path)}
	const perStore = 24
	numbers := make([][]int64, len(stores))
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			for j := range perStore {
				serial := big.NewInt(int64(0x1000*(i+1) + j))
				if err := s.AddCertificate(t.Context(), storeRecord(serial)); err != nil {
					errs[i] = err
					return
				}
				n, err := s.NextCRLNumber(t.Context())
				if err != nil {
					errs[i] = err
					return
				}
				numbers[i] = append(numbers[i], n.Int64())
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))

	seen := map[int64]bool{}
	for _, ns := range numbers {
		for _, n := range ns {
			assert.False(t, seen[n], "CRL number %d handed out twice", n)
			seen[n] = true
		}
	}
	assert.Len(t, seen, len(stores)*perStore)

	// Each revokes one of the other's certificates; both see everything.
	_, err := stores[0].Revoke(t.Context(), big.NewInt(0x2000), provider.ReasonSuperseded, time.Now())
	require.NoError(t, err)
	_, err = stores[1].Revoke(t.Context(), big.NewInt(0x1000), provider.ReasonKeyCompromise, time.Now())
	require.NoError(t, err)
	_, err = stores[1].Revoke(t.Context(), big.NewInt(0x2000), provider.ReasonKeyCompromise, time.Now())
	assert.ErrorIs(t, err, provider.ErrAlreadyRevoked)
	assert.ErrorIs(t, stores[1].AddCertificate(t.Context(), storeRecord(big.NewInt(0x1001))), rootca.ErrDuplicateSerial)
	for i, s := range stores {
		list, err := s.ListCertificates(t.Context(), nil)
		require.NoError(t, err)
		assert.Len(t, list, len(stores)*perStore, "store %d", i)
		revs, err := s.Revocations(t.Context())
		require.NoError(t, err)
		if assert.Len(t, revs, 2, "store %d", i) {
			assert.Equal(t, int64(0x1000), revs[0].Serial.Int64())
			assert.Equal(t, provider.ReasonKeyCompromise, revs[0].Reason)
			assert.Equal(t, int64(0x2000), revs[1].Serial.Int64())
			assert.Equal(t, provider.ReasonSuperseded, revs[1].Reason)
		}
	}
}

func TestSQLStoreCreateAuthorityRace(t *testing.T) {
	for round := range 5 {
		path := filepath.Join(t.TempDir(), "ca.db")
		stores := []*sqlstore.Store{openTestSQLite(t, path), openTestSQLite(t, path)}
		errs := make([]error, len(stores))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Go(func() {
				<-start
				errs[i] = s.CreateAuthority(t.Context(), &rootca.Authority{
					Certificates: [][]byte{fmt.Appendf(nil, "CA of store %d", i)},
					Key:          fmt.Appendf(nil, "key of store %d", i),
				})
			})
		}
		close(start)
		wg.Wait()

		winner := -1
		for i, err := range errs {
			if err == nil {
				assert.Equal(t, -1, winner, "round %d: two stores created a CA", round)
				winner = i
			} else {
				assert.ErrorIs(t, err, rootca.ErrAuthorityExists, "round %d, store %d", round, i)
			}
		}
		require.NotEqual(t, -1, winner, "round %d: no store created a CA", round)
		for i, s := range stores {
			a, err := s.LoadAuthority(t.Context())
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("key of store %d", winner), string(a.Key), "round %d: store %d loads the winner", round, i)
			assert.Len(t, a.Certificates, 1)
		}
	}
}

// childEnv names the file a child process of TestSQLStoreProcesses works
// on.
const childEnv = "ROOTCA_SQLSTORE_TEST_CHILD"

// TestSQLStoreProcesses runs the test binary twice more, as two processes
// sharing a store, and checks that their CRL numbers never collide.
func TestSQLStoreProcesses(t *testing.T) {
	if path := os.Getenv(childEnv); path != "" {
		sqlStoreChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "ca.db")
	const children = 2
	outs := make([]bytes.Buffer, children)
	errs := make([]error, children)
	var wg sync.WaitGroup
	for i := range children {
		cmd := exec.CommandContext(t.Context(), exe, "-test.run=^TestSQLStoreProcesses$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"="+path, "ROOTCA_SQLSTORE_TEST_CHILD_ID="+strconv.Itoa(i))
		cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		wg.Go(func() { errs[i] = cmd.Run() })
	}
	wg.Wait()
	seen := map[int64]int{}
	for i := range children {
		require.NoError(t, errs[i], "child %d:\n%s", i, outs[i].String())
		sc := bufio.NewScanner(&outs[i])
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "crl "); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				require.NoError(t, err)
				seen[n]++
			}
		}
	}
	assert.Len(t, seen, children*childRounds, "distinct CRL numbers")
	for n, c := range seen {
		assert.Equal(t, 1, c, "CRL number %d handed out %d times", n, c)
	}
	s := openTestSQLite(t, path)
	list, err := s.ListCertificates(t.Context(), nil)
	require.NoError(t, err)
	assert.Len(t, list, children*childRounds)
}

const childRounds = 20

// sqlStoreChild is the work of one child process of TestSQLStoreProcesses:
// it prints one "crl N" line per CRL number it gets.
func sqlStoreChild(t *testing.T, path string) {
	id, err := strconv.Atoi(os.Getenv("ROOTCA_SQLSTORE_TEST_CHILD_ID"))
	require.NoError(t, err)
	s := openTestSQLite(t, path)
	for i := range childRounds {
		require.NoError(t, s.AddCertificate(t.Context(), storeRecord(big.NewInt(int64(0x100*(id+1)+i)))))
		n, err := s.NextCRLNumber(t.Context())
		require.NoError(t, err)
		fmt.Printf("crl %d\n", n.Int64())
	}
}

func TestOpenSQLiteNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	garbage := bytes.Repeat([]byte("this is not an SQLite database\n"), 200)
	require.NoError(t, os.WriteFile(path, garbage, 0o600))
	s, err := sqlite.Open(t.Context(), path)
	require.Error(t, err)
	assert.Nil(t, s)
	assert.Contains(t, err.Error(), "rootca: ")
	assert.Contains(t, err.Error(), "not an SQLite database")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, garbage, after, "the file is left alone")
}

func TestOpenSQLiteNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	s, err := sqlite.Open(t.Context(), path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = rawDB(t, path).ExecContext(t.Context(),
		`INSERT INTO schema_version (version, applied_at) VALUES (99, '2040-01-01T00:00:00.000000000Z')`)
	require.NoError(t, err)

	s, err = sqlite.Open(t.Context(), path)
	require.Error(t, err)
	assert.Nil(t, s)
	assert.Contains(t, err.Error(), "schema version 99 is newer than version 4")
}

func TestOpenSQLiteBadPath(t *testing.T) {
	tests := []struct {
		name string
		path string
	}{
		{"Empty", ""},
		{"MissingDirectory", filepath.Join(t.TempDir(), "missing", "ca.db")},
		{"Directory", t.TempDir()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := sqlite.Open(t.Context(), tc.path)
			assert.Error(t, err)
			assert.Nil(t, s)
		})
	}
}

// TestOpenSQLiteOddPath checks that no character of a path is taken for a
// DSN or URI parameter.
func TestOpenSQLiteOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a b?c#d%20&mode=ro;e")
	require.NoError(t, os.Mkdir(dir, 0o700))
	path := filepath.Join(dir, "ca?_txlock=deferred.db")
	s, err := sqlite.Open(t.Context(), path)
	require.NoError(t, err)
	require.NoError(t, s.AddCertificate(t.Context(), storeRecord(big.NewInt(7))))
	require.NoError(t, s.Close())

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Contains(t, names, "ca?_txlock=deferred.db")
	s = openTestSQLite(t, path)
	_, err = s.Certificate(t.Context(), big.NewInt(7))
	assert.NoError(t, err)
}

func TestSQLStoreErrorsOmitKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	s := openTestSQLite(t, path)
	secret := "-----BEGIN ENCRYPTED PRIVATE KEY-----\nSECRETSECRET\n"
	a := &rootca.Authority{Certificates: [][]byte{[]byte("ca")}, Key: []byte(secret)}
	require.NoError(t, s.CreateAuthority(t.Context(), a))
	err := s.CreateAuthority(t.Context(), a)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "SECRETSECRET")

	// A database failure in the middle of CreateAuthority: the chain
	// table is gone.
	other := filepath.Join(t.TempDir(), "ca.db")
	s2 := openTestSQLite(t, other)
	_, err = rawDB(t, other).ExecContext(t.Context(), `DROP TABLE authority_certificates`)
	require.NoError(t, err)
	err = s2.CreateAuthority(t.Context(), a)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "SECRETSECRET")
	assert.Contains(t, err.Error(), "rootca: create authority: ")
	_, err = s2.LoadAuthority(t.Context())
	assert.Error(t, err, "the failed CreateAuthority left no CA behind")
}

func TestSQLStoreCorruptRow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	s := openTestSQLite(t, path)
	require.NoError(t, s.AddCertificate(t.Context(), storeRecord(big.NewInt(0xab))))
	_, err := rawDB(t, path).ExecContext(t.Context(), `UPDATE certificates SET dns_names = 'not json'`)
	require.NoError(t, err)
	_, err = s.Certificate(t.Context(), big.NewInt(0xab))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rootca: certificate ab: stored dns_names")
}

func TestSQLStoreZeroValue(t *testing.T) {
	var s sqlstore.Store
	_, err := s.LoadAuthority(t.Context())
	assert.ErrorIs(t, err, rootca.ErrStoreClosed)
	assert.ErrorIs(t, s.AddCertificate(t.Context(), storeRecord(big.NewInt(1))), rootca.ErrStoreClosed)
	assert.NoError(t, s.Close())
}

func TestSQLStoreCloseTwice(t *testing.T) {
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ca.db"))
	require.NoError(t, err)
	assert.NoError(t, s.Close())
	assert.NoError(t, s.Close())
}

func BenchmarkSQLStoreAddCertificate(b *testing.B) {
	s := openTestSQLite(b, "")
	rec := storeRecord(big.NewInt(1))
	ctx := b.Context()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rec.Serial = big.NewInt(int64(i + 1))
		if err := s.AddCertificate(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
}
