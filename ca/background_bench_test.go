package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/postgres"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// BenchmarkRenewalYear simulates 100,000 hosts (1,000 under -short) on one
// CA: their certificates (365 days, the default) are issued over one
// simulated day through Manager.Provision (8 at a time), then the
// background task runs for 367 simulated days with the defaults (wake
// every hour, 15-day alert window, 4 renewals in flight, 10 per second)
// and renews them all. Hosts are in memory and answer with one CSR made
// once, so that the CA's work is measured, not the hosts' key
// generation. Reported:
//
//   - issue-p50-ms, issue-p99-ms: wall-clock latency of each initial
//     Provision call (issue, store, CA bundle);
//   - renew-p50-ms, renew-p99-ms: wall-clock latency of each renewal's
//     Provision (the superseded certificate's revocation follows it);
//   - renewals/s: renewals over the wall-clock time from the first
//     renewal to the last (scans and CRL samples included);
//   - peak-minute/mean: the most renewals started in one simulated
//     minute over the mean per minute between the first and last renewal;
//   - scan-ms, scan-listed: the longest scan's wall-clock time and the
//     records it listed (all hosts are in their window at once);
//   - crl-max-entries, crl-max-kb, crl-end-entries: the CRL signed once a
//     simulated week (and at the end): largest, and at the end, when the
//     superseded certificates have expired.
//
// The SQLite store is on a temp file; PostgreSQL runs when
// KVMPKI_TEST_POSTGRES_URL is set (eval "$(bash .ci/start-databases)").
func BenchmarkRenewalYear(b *testing.B) {
	hosts := 100000
	if testing.Short() {
		hosts = 1000
	}
	b.Run("sqlite", func(b *testing.B) {
		for range b.N {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "ca.db"))
			if err != nil {
				b.Fatal(err)
			}
			runRenewalYear(b, st, hosts)
		}
	})
	b.Run("postgres", func(b *testing.B) {
		for range b.N {
			url := peers.PostgresDatabase(b)
			st, err := postgres.Open(context.Background(), url)
			if err != nil {
				b.Fatal(err)
			}
			runRenewalYear(b, st, hosts)
		}
	})
}

// benchHost is a light in-memory ca.Host.
type benchHost struct {
	csr *[]byte
	rec *renewalRecorder
}

type renewalRecorder struct {
	now       func() time.Time
	renewing  atomic.Bool
	mu        sync.Mutex
	perMinute map[int64]int
	first     time.Time // wall clock of the first and last renewal
	last      time.Time
	count     int
}

func (h benchHost) SetupKeystore(context.Context, *ca.KeystoreSetup) ([]byte, error) {
	if h.rec.renewing.Load() {
		r := h.rec
		r.mu.Lock()
		r.perMinute[h.rec.now().Unix()/60]++
		r.count++
		if r.first.IsZero() {
			r.first = time.Now()
		}
		r.last = time.Now()
		r.mu.Unlock()
	}
	return *h.csr, nil
}

func (benchHost) InstallCertificate(context.Context, *ca.CertificateInstall) error { return nil }
func (benchHost) Reload(context.Context) error                                     { return nil }

func percentiles(d []time.Duration) (p50, p99 float64) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	return ms(d[len(d)/2]), ms(d[len(d)*99/100])
}

func runRenewalYear(b *testing.B, store rootca.Store, hosts int) {
	b.Helper()
	ctx := context.Background()
	clk := &clock{}
	clk.Set(simStart)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	root, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: rootca.Options{Signer: key, Time: clk.Now, RevocationPollInterval: -1}})
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	reg := &provider.Registry{}
	if err := reg.Register("root", "bench", func(context.Context) (provider.Provider, error) { return nopClose{root}, nil }); err != nil {
		b.Fatal(err)
	}
	m, err := ca.New(ctx, reg, &ca.Settings{Time: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()

	hostKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "kvm"}}, hostKey)
	if err != nil {
		b.Fatal(err)
	}
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	rec := &renewalRecorder{now: clk.Now, perMinute: map[int64]int{}}
	host := benchHost{csr: &csr, rec: rec}
	name := func(i int) string { return fmt.Sprintf("h%06d.kvm.example.org", i) }
	request := func(i int) *ca.ProvisionRequest {
		n := name(i)
		return &ca.ProvisionRequest{Name: n, Host: host, DNSNames: []string{n}}
	}

	// Issuance over one simulated day, in batches of 64, 8 at a time.
	b.ResetTimer()
	var issueLat []time.Duration
	var latMu sync.Mutex
	const batch, workers = 64, 8
	for start := 0; start < hosts; start += batch {
		clk.Set(simStart.Add(24 * time.Hour * time.Duration(start) / time.Duration(hosts)))
		next := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range next {
					t0 := time.Now()
					if _, err := m.Provision(ctx, request(i)); err != nil {
						b.Error(err)
					}
					latMu.Lock()
					issueLat = append(issueLat, time.Since(t0))
					latMu.Unlock()
				}
			})
		}
		for i := start; i < min(start+batch, hosts); i++ {
			next <- i
		}
		close(next)
		wg.Wait()
	}
	issueWall := time.Duration(0)
	for _, d := range issueLat {
		issueWall += d
	}

	// A year: the background task renews every host.
	var renewLat []time.Duration
	var alerts atomic.Int64
	end := simStart.Add(367 * 24 * time.Hour)
	var bg *ca.Background
	var maxScan time.Duration
	var maxListed int
	var crlMaxEntries, crlMaxBytes, crlEndEntries int
	nextCRL := simStart
	sampleCRL := func() int {
		crl, err := root.SignCRL(ctx)
		if err != nil {
			b.Fatal(err)
		}
		crlMaxEntries = max(crlMaxEntries, len(crl.RevokedCertificateEntries))
		crlMaxBytes = max(crlMaxBytes, len(crl.Raw))
		return len(crl.RevokedCertificateEntries)
	}
	bg, err = m.NewBackground(&ca.BackgroundOptions{
		HostFor: func(_ context.Context, r *provider.CertificateRecord) (*ca.ProvisionRequest, error) {
			if len(r.DNSNames) == 0 || !strings.HasPrefix(r.DNSNames[0], "h") {
				return nil, nil
			}
			i, err := strconv.Atoi(r.DNSNames[0][1:7])
			if err != nil {
				return nil, nil
			}
			req := request(i)
			req.Host = timedHost{host, &renewLat, &latMu, new(time.Time)}
			return req, nil
		},
		Alert: func(a ca.Alert) { alerts.Add(1); b.Log(a.String()) },
		Sleep: func(ctx context.Context, d time.Duration) error {
			if n, took := ca.LastScan(bg); n > maxListed || (n == maxListed && took > maxScan) {
				maxListed, maxScan = n, took
			}
			if d >= time.Second {
				ca.WaitIdle(bg)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			now := clk.Now().Add(d)
			if !now.Before(nextCRL) {
				sampleCRL()
				nextCRL = nextCRL.Add(7 * 24 * time.Hour)
			}
			if now.After(end) {
				clk.Set(end)
				<-ctx.Done()
				return ctx.Err()
			}
			clk.Set(now)
			return nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	rec.renewing.Store(true)
	runUntil(b, bg, clk, end)
	crlEndEntries = sampleCRL()
	b.StopTimer()

	if rec.count != hosts {
		b.Errorf("%d renewals, want %d", rec.count, hosts)
	}
	if alerts.Load() != 0 {
		b.Errorf("%d alerts", alerts.Load())
	}
	var firstMin, lastMin int64 = 1 << 62, 0
	peak := 0
	for mnt, n := range rec.perMinute {
		firstMin, lastMin = min(firstMin, mnt), max(lastMin, mnt)
		peak = max(peak, n)
	}
	mean := float64(rec.count) / float64(lastMin-firstMin+1)
	ip50, ip99 := percentiles(issueLat)
	rp50, rp99 := percentiles(renewLat)
	b.ReportMetric(float64(hosts), "hosts")
	b.ReportMetric(ip50, "issue-p50-ms")
	b.ReportMetric(ip99, "issue-p99-ms")
	b.ReportMetric(float64(len(issueLat))/issueWall.Seconds()*workers, "issues/s")
	b.ReportMetric(rp50, "renew-p50-ms")
	b.ReportMetric(rp99, "renew-p99-ms")
	b.ReportMetric(float64(rec.count)/rec.last.Sub(rec.first).Seconds(), "renewals/s")
	b.ReportMetric(float64(peak)/mean, "peak-minute/mean")
	b.ReportMetric(mean, "mean-per-minute")
	b.ReportMetric(float64(maxScan)/float64(time.Millisecond), "scan-ms")
	b.ReportMetric(float64(maxListed), "scan-listed")
	b.ReportMetric(float64(crlMaxEntries), "crl-max-entries")
	b.ReportMetric(float64(crlMaxBytes)/1024, "crl-max-kb")
	b.ReportMetric(float64(crlEndEntries), "crl-end-entries")
	b.ReportMetric(0, "ns/op")
}

// timedHost times one renewal, from the host's first call to its last.
type timedHost struct {
	benchHost
	lat   *[]time.Duration
	mu    *sync.Mutex
	start *time.Time
}

func (h timedHost) SetupKeystore(ctx context.Context, s *ca.KeystoreSetup) ([]byte, error) {
	*h.start = time.Now()
	return h.benchHost.SetupKeystore(ctx, s)
}

func (h timedHost) Reload(context.Context) error {
	d := time.Since(*h.start)
	h.mu.Lock()
	*h.lat = append(*h.lat, d)
	h.mu.Unlock()
	return nil
}
