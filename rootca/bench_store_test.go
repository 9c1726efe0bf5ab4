package rootca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kvmpki/kvmpki/provider"
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
	opts := &Options{Signer: key, RevocationPollInterval: -1}
	mem, err := Open(b.Context(), NewMemStore(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Close()
	sqlStore, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "ca.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer sqlStore.Close()
	disk, err := Open(b.Context(), sqlStore, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer disk.Close()

	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "kvm1.example.org"}, DNSNames: []string{"kvm1.example.org"},
	}, key)
	if err != nil {
		b.Fatal(err)
	}
	req := &provider.IssueRequest{CSR: csr, DNSNames: []string{"kvm1.example.org"}, Role: provider.RoleHost}
	const perIssuer = 8
	batch := func(ca *CA) time.Duration {
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
