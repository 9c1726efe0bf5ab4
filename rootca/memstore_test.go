package rootca_test

import (
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

func TestMemStoreZeroValue(t *testing.T) {
	var m rootca.MemStore
	require.NoError(t, m.AddCertificate(t.Context(), storeRecord(big.NewInt(1))))
	n, err := m.NextCRLNumber(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(1), n.Int64())
	require.NoError(t, m.Close())
	assert.NoError(t, m.Close(), "second Close")
	_, err = m.Certificate(t.Context(), big.NewInt(1))
	assert.ErrorIs(t, err, rootca.ErrStoreClosed)
}

// storeRecord returns a valid record for the tests of this file and
// sqlstore_test.go.
func storeRecord(serial *big.Int) *provider.CertificateRecord {
	notAfter := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	return &provider.CertificateRecord{
		Serial:      serial,
		Subject:     "CN=" + provider.FormatSerial(serial),
		DNSNames:    []string{"h" + provider.FormatSerial(serial) + ".example.org"},
		IPAddresses: []net.IP{net.IPv4(192, 0, 2, 1)},
		NotBefore:   notAfter.Add(-24 * time.Hour),
		NotAfter:    notAfter,
		Role:        provider.RoleHost,
		Raw:         []byte("DER " + provider.FormatSerial(serial)),
	}
}

// eachStore runs f on a new MemStore and a new SQLStore.
func eachStore(t *testing.T, f func(t *testing.T, s rootca.Store)) {
	t.Run("MemStore", func(t *testing.T) { f(t, rootca.NewMemStore()) })
	t.Run("SQLStore", func(t *testing.T) {
		s := openTestSQLite(t, "")
		f(t, s)
	})
}

// TestStoresRefuseInvalidInput checks the input checks both stores of
// this package share: a refused call fails and stores nothing.
func TestStoresRefuseInvalidInput(t *testing.T) {
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	edit := func(f func(r *provider.CertificateRecord)) *provider.CertificateRecord {
		r := storeRecord(big.NewInt(0x42))
		f(r)
		return r
	}
	records := []struct {
		name string
		rec  *provider.CertificateRecord
	}{
		{"Nil", nil},
		{"NilSerial", edit(func(r *provider.CertificateRecord) { r.Serial = nil })},
		{"ZeroSerial", edit(func(r *provider.CertificateRecord) { r.Serial = big.NewInt(0) })},
		{"NegativeSerial", edit(func(r *provider.CertificateRecord) { r.Serial = big.NewInt(-5) })},
		{"SerialOver20Octets", edit(func(r *provider.CertificateRecord) { r.Serial = new(big.Int).Lsh(big.NewInt(1), 160) })},
		{"Revoked", edit(func(r *provider.CertificateRecord) { r.Status = provider.StatusRevoked })},
		{"RevokedAtSet", edit(func(r *provider.CertificateRecord) { r.RevokedAt = at })},
		{"ReasonSet", edit(func(r *provider.CertificateRecord) { r.Reason = provider.ReasonKeyCompromise })},
		{"NoRaw", edit(func(r *provider.CertificateRecord) { r.Raw = nil })},
		{"BadIP", edit(func(r *provider.CertificateRecord) { r.IPAddresses = []net.IP{{1, 2, 3}} })},
		{"YearAfter9999", edit(func(r *provider.CertificateRecord) { r.NotAfter = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{"NegativeYear", edit(func(r *provider.CertificateRecord) { r.NotBefore = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{"InvalidUTF8Subject", edit(func(r *provider.CertificateRecord) { r.Subject = "CN=\xff" })},
		{"NULInDNSName", edit(func(r *provider.CertificateRecord) { r.DNSNames = []string{"a\x00b"} })},
	}
	revocations := []struct {
		name   string
		serial *big.Int
		reason provider.RevocationReason
		at     time.Time
	}{
		{"NilSerial", nil, provider.ReasonKeyCompromise, at},
		{"InvalidReason", big.NewInt(0x42), provider.RevocationReason(7), at},
		{"ZeroTime", big.NewInt(0x42), provider.ReasonKeyCompromise, time.Time{}},
		{"YearAfter9999", big.NewInt(0x42), provider.ReasonKeyCompromise, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	authorities := []struct {
		name string
		a    *rootca.Authority
	}{
		{"Nil", nil},
		{"NoCertificates", &rootca.Authority{Key: []byte("k")}},
		{"EmptyCertificate", &rootca.Authority{Certificates: [][]byte{{0x30}, nil}}},
	}
	eachStore(t, func(t *testing.T, s rootca.Store) {
		for _, tc := range records {
			t.Run("AddCertificate/"+tc.name, func(t *testing.T) {
				assert.Error(t, s.AddCertificate(t.Context(), tc.rec))
			})
		}
		list, err := s.ListCertificates(t.Context(), nil)
		require.NoError(t, err)
		assert.Empty(t, list, "refused records are not stored")

		require.NoError(t, s.AddCertificate(t.Context(), storeRecord(big.NewInt(0x42))))
		for _, tc := range revocations {
			t.Run("Revoke/"+tc.name, func(t *testing.T) {
				rev, err := s.Revoke(t.Context(), tc.serial, tc.reason, tc.at)
				assert.Error(t, err)
				assert.Nil(t, rev)
			})
		}
		revs, err := s.Revocations(t.Context())
		require.NoError(t, err)
		assert.Empty(t, revs, "refused revocations are not stored")

		for _, tc := range authorities {
			t.Run("CreateAuthority/"+tc.name, func(t *testing.T) {
				assert.Error(t, s.CreateAuthority(t.Context(), tc.a))
			})
		}
		_, err = s.LoadAuthority(t.Context())
		assert.ErrorIs(t, err, provider.ErrNotFound, "refused authorities are not stored")

		_, err = s.Certificate(t.Context(), nil)
		assert.Error(t, err, "Certificate(nil)")
	})
}

func BenchmarkMemStoreAddCertificate(b *testing.B) {
	s := rootca.NewMemStore()
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
