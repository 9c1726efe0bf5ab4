package rootca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// The benchmarks here measure kvmpki against the bare standard-library
// work it wraps, in the same run, interleaving the two so that the noise
// of a shared machine hits both alike. Each reports ns/op for kvmpki,
// base-ns/op for the baseline, and x-baseline: the median of kvmpki's
// times over the median of the baseline's.

// compare runs ours and base alternately b.N times each, timing each call
// itself (the benchmark timer's start and stop read the memory statistics,
// which would cost more than what is measured). It reports ns/op and
// base-ns/op as medians, x-baseline as the ratio of the medians and
// x-baseline-mean as the ratio of the totals.
func compare(b *testing.B, base, ours func()) {
	b.Helper()
	baseTimes := make([]time.Duration, 0, b.N)
	ourTimes := make([]time.Duration, 0, b.N)
	var baseTotal, ourTotal time.Duration
	b.ResetTimer()
	timeBase := func() {
		start := time.Now()
		base()
		d := time.Since(start)
		baseTimes, baseTotal = append(baseTimes, d), baseTotal+d
	}
	timeOurs := func() {
		start := time.Now()
		ours()
		d := time.Since(start)
		ourTimes, ourTotal = append(ourTimes, d), ourTotal+d
	}
	for i := 0; i < b.N; i++ {
		// Alternate the order, so that neither side always pays for the
		// garbage the other left behind.
		if i%2 == 0 {
			timeBase()
			timeOurs()
		} else {
			timeOurs()
			timeBase()
		}
	}
	b.StopTimer()
	mb, mo := median(baseTimes), median(ourTimes)
	b.ReportMetric(float64(mo.Nanoseconds()), "ns/op")
	b.ReportMetric(float64(mb.Nanoseconds()), "base-ns/op")
	b.ReportMetric(float64(mo)/float64(mb), "x-baseline")
	b.ReportMetric(float64(ourTotal)/float64(baseTotal), "x-baseline-mean")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchCA(b *testing.B) *CA {
	b.Helper()
	ca, err := Create(context.Background(), NewMemStore(), &CreateOptions{
		KeyAlgorithm: provider.KeyAlgorithmECDSA, KeySize: 256,
		Options: Options{Password: func() ([]byte, error) { return []byte("benchmark"), nil }},
	})
	if err != nil {
		b.Fatal(err)
	}
	return ca
}

// BenchmarkIssueCSR: target at most 1.15x the bare standard-library work
// (x509.ParseCertificateRequest + CheckSignature + x509.CreateCertificate)
// on the same CSR, with a P-256 CA.
func BenchmarkIssueCSR(b *testing.B) {
	ca := benchCA(b)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, req := benchHostRequest(b, key)

	base := func() {
		csr, err := x509.ParseCertificateRequest(csrDER)
		if err != nil {
			b.Fatal(err)
		}
		if err := csr.CheckSignature(); err != nil {
			b.Fatal(err)
		}
		serial, _ := randomSerial(rand.Reader)
		now := time.Now()
		tmpl := &x509.Certificate{
			SerialNumber: serial, Subject: csr.Subject, NotBefore: now, NotAfter: now.Add(defaultValidity),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:    csr.DNSNames, BasicConstraintsValid: true,
		}
		if _, err := x509.CreateCertificate(rand.Reader, tmpl, ca.auth.Load().current.cert, csr.PublicKey, ca.auth.Load().current.signer); err != nil {
			b.Fatal(err)
		}
	}
	ours := func() {
		if _, err := ca.Issue(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	compare(b, base, ours)
}

// BenchmarkIsRevoked: target O(1) and under 1 microsecond with 1,000,000
// revoked serials. It reports the median ns per lookup with 1,000, 100,000
// and 1,000,000 revoked serials, and their ratios: x-100k (1M over 100k)
// stays near 1 because the lookup is a hash probe; x-1k is larger only
// because a set of 1,000 fits the CPU caches and one of 1,000,000 does not.
func BenchmarkIsRevoked(b *testing.B) {
	fill := func(n int) (*revocationSet, []*big.Int) {
		s := &revocationSet{}
		revs := make([]Revocation, n)
		probes := make([]*big.Int, 0, 1024)
		for i := range revs {
			serial, _ := randomSerial(rand.Reader)
			revs[i] = Revocation{Serial: serial, Reason: provider.ReasonKeyCompromise}
			if i%(n/512) == 0 {
				probes = append(probes, serial)
			}
		}
		s.merge(revs)
		// Half the probes miss, as most handshakes do.
		for len(probes) < 1024 {
			serial, _ := randomSerial(rand.Reader)
			probes = append(probes, serial)
		}
		return s, probes
	}
	type size struct {
		set    *revocationSet
		probes []*big.Int
		ns     []float64
	}
	sizes := map[string]*size{}
	for name, n := range map[string]int{"1k": 1_000, "100k": 100_000, "1M": 1_000_000} {
		s, p := fill(n)
		sizes[name] = &size{set: s, probes: p}
	}
	lookups := max(b.N, 200_000)
	perLookup := func(sz *size) float64 {
		start := time.Now()
		hits := 0
		for i := 0; i < lookups; i++ {
			if _, ok := sz.set.lookup(sz.probes[i%len(sz.probes)]); ok {
				hits++
			}
		}
		if hits == 0 {
			b.Fatal("no probe hit")
		}
		return float64(time.Since(start).Nanoseconds()) / float64(lookups)
	}
	b.ResetTimer()
	for round := 0; round < 7; round++ {
		for _, name := range []string{"1k", "100k", "1M"} {
			sizes[name].ns = append(sizes[name].ns, perLookup(sizes[name]))
		}
	}
	med := func(name string) float64 {
		ns := slices.Clone(sizes[name].ns)
		slices.Sort(ns)
		return ns[len(ns)/2]
	}
	b.ReportMetric(med("1M"), "ns/op")
	b.ReportMetric(med("1k"), "ns/lookup-1k")
	b.ReportMetric(med("100k"), "ns/lookup-100k")
	b.ReportMetric(med("1M")/med("100k"), "x-100k")
	b.ReportMetric(med("1M")/med("1k"), "x-1k")
}

// BenchmarkSignCRL: target at most 1.2x the standard library's work for
// the same parsed, signed CRL of 100,000 entries: x509.CreateRevocationList
// then x509.ParseRevocationList (SignCRL returns the list parsed).
func BenchmarkSignCRL(b *testing.B) {
	ca := benchCA(b)
	ctx := context.Background()
	const n = 100_000
	store := ca.store.(*MemStore)
	entries := make([]x509.RevocationListEntry, 0, n)
	now := time.Now().UTC()
	for i := 0; i < n; i++ {
		serial, _ := randomSerial(rand.Reader)
		rec := &provider.CertificateRecord{
			Serial: serial, Subject: "CN=h", NotBefore: now, NotAfter: now.Add(time.Hour * 24 * 30),
			Role: provider.RoleHost, Raw: []byte{0x30, 0},
		}
		if err := store.AddCertificate(ctx, rec); err != nil {
			b.Fatal(err)
		}
		rev, err := store.Revoke(ctx, serial, provider.ReasonKeyCompromise, now)
		if err != nil {
			b.Fatal(err)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: rev.RevokedAt.Truncate(time.Second), ReasonCode: int(rev.Reason)})
	}
	if err := ca.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	number := big.NewInt(0)
	base := func() {
		number.Add(number, big.NewInt(1))
		t := time.Now().UTC().Truncate(time.Second)
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: number, ThisUpdate: t, NextUpdate: t.Add(defaultCRLValidity),
			RevokedCertificateEntries: entries, SignatureAlgorithm: ca.auth.Load().current.sigAlg,
		}, ca.auth.Load().current.cert, ca.auth.Load().current.signer)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := x509.ParseRevocationList(der); err != nil {
			b.Fatal(err)
		}
	}
	ours := func() {
		crl, err := ca.SignCRL(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(crl.RevokedCertificateEntries) != n {
			b.Fatalf("CRL has %d entries, want %d", len(crl.RevokedCertificateEntries), n)
		}
	}
	compare(b, base, ours)
}

// benchHostRequest returns a host's CSR for kvm1.example.org, signed by
// key, and a request that vouches for the name.
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
