package sqlite_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// issuers is how many goroutines issue at once in
// BenchmarkIssueConcurrentSQLite, as a busy management server serves
// several hosts at once.
const issuers = 8

// BenchmarkIssueConcurrentSQLite: target at least 0.6x the issuance
// throughput of the same CA on a MemStore, with a P-256 CA and 8
// concurrent issuers, every issuance durable (committed with
// synchronous=FULL) when its call returns. Each round issues a batch on
// either store, interleaved; x-memstore is the median over rounds of the
// SQLite throughput over the MemStore throughput.
func BenchmarkIssueConcurrentSQLite(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	opts := &rootca.CreateOptions{Options: rootca.Options{Signer: key, RevocationPollInterval: -1}}
	mem, err := rootca.Create(b.Context(), rootca.NewMemStore(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Close()
	sqlStore, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "ca.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer sqlStore.Close()
	disk, err := rootca.Create(b.Context(), sqlStore, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer disk.Close()

	_, req := benchHostRequest(b, key)
	const perIssuer = 8
	batch := func(ca *rootca.CA) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for range issuers {
			wg.Go(func() {
				for range perIssuer {
					if _, err := ca.Issue(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	var ratios []float64
	var memTotal, diskTotal time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var m, d time.Duration
		if i%2 == 0 {
			m, d = batch(mem), batch(disk)
		} else {
			d, m = batch(disk), batch(mem)
		}
		memTotal, diskTotal = memTotal+m, diskTotal+d
		ratios = append(ratios, float64(m)/float64(d))
	}
	b.StopTimer()
	slices.Sort(ratios)
	n := float64(b.N * issuers * perIssuer)
	b.ReportMetric(float64(diskTotal.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(memTotal.Nanoseconds())/n, "mem-ns/op")
	b.ReportMetric(n/diskTotal.Seconds(), "issues/s")
	b.ReportMetric(ratios[len(ratios)/2], "x-memstore")
}

// Sizes of the store BenchmarkOpenLarge opens; with -short (as CI runs
// benchmarks once, to keep them working) a tenth.
var largeIssued, largeRevoked = 1_000_000, 100_000

func largeSizes() {
	if testing.Short() {
		largeIssued, largeRevoked = 100_000, 10_000
	}
}

// largeSQLite returns the path of an SQLite store holding largeIssued
// certificate records, every tenth revoked, made once per schema version
// and kept in the temporary directory across runs (building it takes
// tens of seconds). The records carry placeholder DER, which opening
// never reads.
func largeSQLite(b *testing.B, key *ecdsa.PrivateKey) string {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("kvmpki-bench-open-%d-%d-v%d.db", largeIssued, largeRevoked, schemaVersion(b)))
	keyPath := path + ".key"
	if der, err := os.ReadFile(keyPath); err == nil {
		if k, err := x509.ParseECPrivateKey(der); err == nil {
			*key = *k
			return path
		}
	}
	_ = os.Remove(path)
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ca, err := rootca.Create(ctx, s, &rootca.CreateOptions{Options: rootca.Options{Signer: key, RevocationPollInterval: -1}})
	if err != nil {
		b.Fatal(err)
	}
	ca.Close()
	now := time.Now()
	der := make([]byte, 600)
	err = inTx(ctx, rawDB(b, path), func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO certificates
			(serial, subject, dns_names, ip_addresses, not_before, not_after, role, status, revoked_at, reason, revocation_seq, der)
			VALUES (?, ?, '["kvm.example.org"]', '[]', ?, ?, 1, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		seq := int64(1)
		for i := range largeIssued {
			serial := new(big.Int).Lsh(big.NewInt(int64(i+1)), 100) // long, like real serials
			var status int64
			var revokedAt, reason, revSeq any
			if i%(largeIssued/largeRevoked) == 0 {
				seq++
				status, revokedAt, reason, revSeq = 1, formatTime(now), int64(provider.ReasonKeyCompromise), seq
			}
			if _, err := stmt.ExecContext(ctx, provider.FormatSerial(serial), "CN=kvm"+strconv.Itoa(i),
				formatTime(now), formatTime(now.Add(time.Duration(i)*time.Second+time.Hour)), status, revokedAt, reason, revSeq, der); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE revocation_counter SET last_seq = ?`, seq)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	der, err = x509.MarshalECPrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(keyPath, der, 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkOpenLarge: target under 2 seconds to open an SQLite store with
// 1,000,000 issued and 100,000 revoked certificates and answer the first
// revocation check, without holding the certificates in memory. It
// reports the median time (ms/open) and the heap the open CA holds
// (heap-MB).
func BenchmarkOpenLarge(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	largeSizes()
	path := largeSQLite(b, key)
	revokedSerial := new(big.Int).Lsh(big.NewInt(int64(largeIssued/largeRevoked*7+1)), 100)
	var times []time.Duration
	var heap uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		s, err := sqlite.Open(context.Background(), path)
		if err != nil {
			b.Fatal(err)
		}
		ca, err := rootca.Open(context.Background(), s, &rootca.Options{Signer: key, RevocationPollInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		_, revoked := ca.IsRevoked(revokedSerial)
		times = append(times, time.Since(start))
		if !revoked {
			b.Fatal("the revoked certificate is not revoked")
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = max(heap, after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))
		runtime.KeepAlive(ca)
		ca.Close()
		s.Close()
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms/open")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
	b.ReportMetric(0, "ns/op")
}

// timeLayout is how the store writes times.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// schemaVersion is the schema version a new store gets.
func schemaVersion(b *testing.B) int {
	path := filepath.Join(b.TempDir(), "version.db")
	s, err := sqlite.Open(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	var v int
	if err := rawDB(b, path).QueryRowContext(b.Context(), `SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil {
		b.Fatal(err)
	}
	return v
}

// rawDB opens the SQLite file at path directly, without the store.
func rawDB(b *testing.B, path string) *sql.DB {
	db, err := sql.Open("sqlite", path+"?_busy_timeout=10000")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func inTx(ctx context.Context, db *sql.DB, f func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// benchHostRequest returns a host request for a CSR of key.
func benchHostRequest(b *testing.B, key crypto.Signer) ([]byte, *provider.IssueRequest) {
	b.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "kvm1.example.org"}, DNSNames: []string{"kvm1.example.org"},
	}, key)
	if err != nil {
		b.Fatal(err)
	}
	return csr, &provider.IssueRequest{CSR: csr, DNSNames: []string{"kvm1.example.org"}, Role: provider.RoleHost}
}
