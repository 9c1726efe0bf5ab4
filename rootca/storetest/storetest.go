package storetest

import (
	"context"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// Options tune Run. The zero value runs the suite for a store that only
// one process uses.
type Options struct {
	// Reopen, if set, opens another store on the database s uses, as a
	// second management server sharing it would; the suite closes it.
	// It turns on the Shared subtests: one CA, unique serials,
	// increasing CRL numbers and revocations seen across the two
	// stores, and a revocation made through one CA refused by the other
	// within one second.
	Reopen func(t *testing.T, s rootca.Store) rootca.Store
}

// Run runs the contract suite against the stores newStore returns. Every
// subtest calls newStore for a new, empty store, which it closes at the
// end of the subtest; newStore reports its own failures through t and
// must not return nil. A nil opts means the zero Options.
//
// Stores that implement rootca.RevocationFeed also get the RevocationFeed
// subtests; the others skip them.
func Run(t *testing.T, newStore func(t *testing.T) rootca.Store, opts *Options) {
	if opts == nil {
		opts = &Options{}
	}
	tests := []struct {
		name string
		run  func(t *testing.T, s rootca.Store)
	}{
		{"LoadAuthority/Empty", testLoadAuthorityEmpty},
		{"CreateAuthority/RoundTrip", testCreateAuthorityRoundTrip},
		{"CreateAuthority/NilKey", testCreateAuthorityNilKey},
		{"CreateAuthority/Exists", testCreateAuthorityExists},
		{"AddCertificate/RoundTrip", testAddCertificateRoundTrip},
		{"AddCertificate/Duplicate", testAddCertificateDuplicate},
		{"AddCertificate/NotValid", testAddCertificateNotValid},
		{"Certificate/Unknown", testCertificateUnknown},
		{"ListCertificates/Empty", testListCertificatesEmpty},
		{"ListCertificates/Order", testListCertificatesOrder},
		{"ListCertificates/Filters", testListCertificatesFilters},
		{"Revoke/Fields", testRevokeFields},
		{"Revoke/Twice", testRevokeTwice},
		{"Revoke/Unknown", testRevokeUnknown},
		{"Revocations/Order", testRevocationsOrder},
		{"NextCRLNumber/Sequence", testNextCRLNumberSequence},
		{"NextCRLNumber/Concurrent", testNextCRLNumberConcurrent},
		{"Concurrent/AddAndRevoke", testConcurrentAddAndRevoke},
		{"Copies/Authority", testCopiesAuthority},
		{"Copies/Records", testCopiesRecords},
		{"CancelledContext", testCancelledContext},
		{"RevocationFeed/All", feedTest(testFeedAll)},
		{"RevocationFeed/Since", feedTest(testFeedSince)},
		{"RevocationFeed/UnknownCursor", feedTest(testFeedUnknownCursor)},
		{"RevocationFeed/Concurrent", feedTest(testFeedConcurrent)},
		{"Rotation/Generations", rotationTest(testRotationGenerations)},
		{"Rotation/Concurrent", rotationTest(testRotationConcurrent)},
		{"Rotation/Lease", leaseTest(testLeaseLifecycle)},
		{"Rotation/LeaseConcurrent", leaseTest(testLeaseConcurrent)},
		{"Rotation/LeaseHolderExact", leaseTest(testLeaseHolderExact)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			require.NotNil(t, s, "newStore returned nil")
			t.Cleanup(func() { assert.NoError(t, s.Close(), "Close") })
			tc.run(t, s)
		})
	}
	runShared(t, newStore, opts)
	// Close gets a store of its own, which the test closes itself:
	// the contract says nothing of a second Close.
	t.Run("Close", func(t *testing.T) {
		s := newStore(t)
		require.NotNil(t, s, "newStore returned nil")
		testClose(t, s)
	})
}

// base is a time with nanoseconds in a zone other than UTC, so that the
// round trips check both.
var base = time.Date(2031, time.March, 4, 5, 6, 7, 123456789, time.FixedZone("UTC+2", 2*60*60))

// record returns a valid record with every field set.
func record(serial *big.Int, notAfter time.Time) *provider.CertificateRecord {
	hex := provider.FormatSerial(serial)
	return &provider.CertificateRecord{
		Serial:   new(big.Int).Set(serial),
		Subject:  "CN=host-" + hex + ".example.org,O=kvmpki",
		DNSNames: []string{"host-" + hex + ".example.org", "host-" + hex},
		IPAddresses: []net.IP{
			net.ParseIP("192.0.2.7"), // 16-byte form of an IPv4 address
			net.ParseIP("2001:db8::7"),
		},
		NotBefore: notAfter.Add(-90 * 24 * time.Hour).Add(-time.Nanosecond),
		NotAfter:  notAfter,
		Role:      provider.RoleHost,
		Status:    provider.StatusValid,
		Raw:       []byte("\x30\x82placeholder DER of " + hex),
	}
}

// serial returns n as a serial number.
func serial(n int64) *big.Int { return big.NewInt(n) }

// longSerial is a 20-octet serial with the top bit clear, the largest kind
// a CA issues.
func longSerial() *big.Int {
	n, ok := new(big.Int).SetString("7fedcba9876543210fedcba9876543210fedcba9", 16)
	if !ok {
		panic("storetest: bad serial literal")
	}
	return n
}

// addAll adds records, failing the test at the first error.
func addAll(t *testing.T, s rootca.Store, recs ...*provider.CertificateRecord) {
	t.Helper()
	for _, rec := range recs {
		require.NoError(t, s.AddCertificate(t.Context(), rec), "AddCertificate(%s)", provider.FormatSerial(rec.Serial))
	}
}

// assertRecord checks that got holds what want holds.
func assertRecord(t *testing.T, want, got *provider.CertificateRecord) {
	t.Helper()
	if !assert.NotNil(t, got, "record") {
		return
	}
	s := provider.FormatSerial(want.Serial)
	if assert.NotNil(t, got.Serial, "record %s: Serial", s) {
		assert.Zero(t, want.Serial.Cmp(got.Serial), "record %s: Serial is %s", s, provider.FormatSerial(got.Serial))
	}
	assert.Equal(t, want.Subject, got.Subject, "record %s: Subject", s)
	if len(want.DNSNames) == 0 {
		assert.Empty(t, got.DNSNames, "record %s: DNSNames", s)
	} else {
		assert.Equal(t, want.DNSNames, got.DNSNames, "record %s: DNSNames", s)
	}
	assertIPs(t, want.IPAddresses, got.IPAddresses, "record "+s+": IPAddresses")
	assertTime(t, want.NotBefore, got.NotBefore, "record "+s+": NotBefore")
	assertTime(t, want.NotAfter, got.NotAfter, "record "+s+": NotAfter")
	assert.Equal(t, want.Role, got.Role, "record %s: Role", s)
	assert.Equal(t, want.Status, got.Status, "record %s: Status", s)
	assertTime(t, want.RevokedAt, got.RevokedAt, "record "+s+": RevokedAt")
	assert.Equal(t, want.Reason, got.Reason, "record %s: Reason", s)
	assert.Equal(t, want.Raw, got.Raw, "record %s: Raw", s)
}

func assertIPs(t *testing.T, want, got []net.IP, what string) {
	t.Helper()
	if !assert.Len(t, got, len(want), what) {
		return
	}
	for i := range want {
		assert.True(t, want[i].Equal(got[i]), "%s[%d]: want %v, got %v", what, i, want[i], got[i])
	}
}

// assertTime checks that got is the same instant as want, to the
// nanosecond.
func assertTime(t *testing.T, want, got time.Time, what string) {
	t.Helper()
	assert.True(t, want.Equal(got), "%s: want %s, got %s", what,
		want.Format(time.RFC3339Nano), got.Format(time.RFC3339Nano))
}

// assertRevocation checks a Revocation against the record it revoked.
func assertRevocation(t *testing.T, rec *provider.CertificateRecord, reason provider.RevocationReason, at time.Time, got rootca.Revocation) {
	t.Helper()
	s := provider.FormatSerial(rec.Serial)
	if assert.NotNil(t, got.Serial, "revocation %s: Serial", s) {
		assert.Zero(t, rec.Serial.Cmp(got.Serial), "revocation %s: Serial is %s", s, provider.FormatSerial(got.Serial))
	}
	assert.Equal(t, reason, got.Reason, "revocation %s: Reason", s)
	assertTime(t, at, got.RevokedAt, "revocation "+s+": RevokedAt")
	assertTime(t, rec.NotAfter, got.NotAfter, "revocation "+s+": NotAfter")
}

// serials returns the serials of recs in hexadecimal, for comparing
// orders.
func serials(recs []*provider.CertificateRecord) []string {
	out := make([]string, len(recs))
	for i, rec := range recs {
		out[i] = provider.FormatSerial(rec.Serial)
	}
	return out
}

func testLoadAuthorityEmpty(t *testing.T, s rootca.Store) {
	a, err := s.LoadAuthority(t.Context())
	assert.ErrorIs(t, err, provider.ErrNotFound)
	assert.Nil(t, a)
}

func testAuthority() *rootca.Authority {
	return &rootca.Authority{
		Certificates: [][]byte{[]byte("\x30\x82issuing CA DER"), []byte("\x30\x82root CA DER\x00\xff")},
		Key:          []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nTESTING KEY\n-----END ENCRYPTED PRIVATE KEY-----\n"),
	}
}

func testCreateAuthorityRoundTrip(t *testing.T, s rootca.Store) {
	want := testAuthority()
	require.NoError(t, s.CreateAuthority(t.Context(), testAuthority()))
	got, err := s.LoadAuthority(t.Context())
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, want.Certificates, got.Certificates)
	assert.Equal(t, want.Key, got.Key)
}

func testCreateAuthorityNilKey(t *testing.T, s rootca.Store) {
	want := testAuthority()
	want.Key = nil
	require.NoError(t, s.CreateAuthority(t.Context(), want))
	got, err := s.LoadAuthority(t.Context())
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, want.Certificates, got.Certificates)
	assert.Empty(t, got.Key, "Key of a CA whose key lives outside the store")
}

func testCreateAuthorityExists(t *testing.T, s rootca.Store) {
	first := testAuthority()
	require.NoError(t, s.CreateAuthority(t.Context(), first))
	second := &rootca.Authority{Certificates: [][]byte{[]byte("\x30\x82another CA")}, Key: []byte("another key")}
	assert.ErrorIs(t, s.CreateAuthority(t.Context(), second), rootca.ErrAuthorityExists)
	second.Key = nil
	assert.ErrorIs(t, s.CreateAuthority(t.Context(), second), rootca.ErrAuthorityExists, "with a nil Key")

	got, err := s.LoadAuthority(t.Context())
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, first.Certificates, got.Certificates, "the first CA stays")
	assert.Equal(t, first.Key, got.Key, "the first CA stays")
}

func testAddCertificateRoundTrip(t *testing.T, s rootca.Store) {
	tests := []struct {
		name string
		rec  *provider.CertificateRecord
	}{
		{"AllFields", record(serial(0x1001), base)},
		{"LongSerial", record(longSerial(), base)},
		{"NoNames", func() *provider.CertificateRecord {
			r := record(serial(0x1002), base.Add(time.Hour))
			r.DNSNames, r.IPAddresses = nil, nil
			r.Role = provider.RoleClient
			return r
		}()},
		{"UTCAndZeroNotBefore", func() *provider.CertificateRecord {
			r := record(serial(0x1003), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC))
			r.NotBefore = time.Time{}
			r.IPAddresses = []net.IP{net.IPv4(10, 0, 0, 1).To4()}
			r.Role = provider.RoleServer
			r.Subject = "CN=ünïcödé \\,+\"<>;,O=kvmpki"
			return r
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, s.AddCertificate(t.Context(), tc.rec))
			got, err := s.Certificate(t.Context(), tc.rec.Serial)
			require.NoError(t, err)
			assertRecord(t, tc.rec, got)
		})
	}
}

func testAddCertificateDuplicate(t *testing.T, s rootca.Store) {
	first := record(serial(0x2a), base)
	addAll(t, s, first)

	dup := record(serial(0x2a), base.Add(time.Hour))
	dup.Subject = "CN=impostor"
	dup.Raw = []byte("other DER")
	assert.ErrorIs(t, s.AddCertificate(t.Context(), dup), rootca.ErrDuplicateSerial)

	got, err := s.Certificate(t.Context(), serial(0x2a))
	require.NoError(t, err)
	assertRecord(t, first, got)
	list, err := s.ListCertificates(t.Context(), nil)
	require.NoError(t, err)
	assert.Len(t, list, 1)
}

func testAddCertificateNotValid(t *testing.T, s rootca.Store) {
	rec := record(serial(0x2b), base)
	rec.Status = provider.StatusRevoked
	rec.RevokedAt = base.Add(-time.Hour)
	rec.Reason = provider.ReasonKeyCompromise
	assert.Error(t, s.AddCertificate(t.Context(), rec), "a record whose Status is not StatusValid")
	_, err := s.Certificate(t.Context(), rec.Serial)
	assert.ErrorIs(t, err, provider.ErrNotFound, "the refused record is not stored")
}

func testCertificateUnknown(t *testing.T, s rootca.Store) {
	addAll(t, s, record(serial(0x10), base))
	got, err := s.Certificate(t.Context(), serial(0x11))
	assert.ErrorIs(t, err, provider.ErrNotFound)
	assert.Nil(t, got)
}

func testListCertificatesEmpty(t *testing.T, s rootca.Store) {
	list, err := s.ListCertificates(t.Context(), nil)
	require.NoError(t, err)
	assert.Empty(t, list)
	revs, err := s.Revocations(t.Context())
	require.NoError(t, err)
	assert.Empty(t, revs)
}

func testListCertificatesOrder(t *testing.T, s rootca.Store) {
	// Serials whose hexadecimal text sorts differently from their value,
	// and NotAfters a nanosecond apart.
	t0, t1 := base, base.Add(time.Nanosecond)
	recs := []*provider.CertificateRecord{
		record(serial(0x100), t1),
		record(serial(0x9), t1),
		record(serial(0x10), t1),
		record(longSerial(), t0),
		record(serial(0xa), t1),
		record(serial(0xff), t0),
		record(serial(0x1), base.Add(24*time.Hour)),
	}
	addAll(t, s, recs...)

	list, err := s.ListCertificates(t.Context(), nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"ff", provider.FormatSerial(longSerial()), "9", "a", "10", "100", "1"}, serials(list))

	byHex := map[string]*provider.CertificateRecord{}
	for _, rec := range recs {
		byHex[provider.FormatSerial(rec.Serial)] = rec
	}
	for _, got := range list {
		if want := byHex[provider.FormatSerial(got.Serial)]; assert.NotNil(t, want, "unexpected serial") {
			assertRecord(t, want, got)
		}
	}
}

func testListCertificatesFilters(t *testing.T, s rootca.Store) {
	day := 24 * time.Hour
	addAll(t, s,
		record(serial(1), base),
		record(serial(2), base.Add(day)),
		record(serial(3), base.Add(2*day)),
		record(serial(4), base.Add(3*day)),
	)
	for _, n := range []int64{2, 4} {
		_, err := s.Revoke(t.Context(), serial(n), provider.ReasonSuperseded, base.Add(-day))
		require.NoError(t, err)
	}
	valid, revoked := provider.StatusValid, provider.StatusRevoked
	tests := []struct {
		name string
		opts *provider.ListOptions
		want []string
	}{
		{"Nil", nil, []string{"1", "2", "3", "4"}},
		{"Zero", &provider.ListOptions{}, []string{"1", "2", "3", "4"}},
		{"Valid", &provider.ListOptions{Status: &valid}, []string{"1", "3"}},
		{"Revoked", &provider.ListOptions{Status: &revoked}, []string{"2", "4"}},
		// ExpiringBefore is exclusive: NotAfter equal to it does not count.
		{"ExpiringBefore", &provider.ListOptions{ExpiringBefore: base.Add(2 * day)}, []string{"1", "2"}},
		{"ExpiringBeforeNanosecond", &provider.ListOptions{ExpiringBefore: base.Add(time.Nanosecond)}, []string{"1"}},
		{"ExpiringBeforeOtherZone", &provider.ListOptions{ExpiringBefore: base.Add(day + time.Nanosecond).UTC()}, []string{"1", "2"}},
		{"ExpiringBeforeNone", &provider.ListOptions{ExpiringBefore: base}, []string{}},
		{"ValidExpiringBefore", &provider.ListOptions{Status: &valid, ExpiringBefore: base.Add(3 * day)}, []string{"1", "3"}},
		{"RevokedExpiringBefore", &provider.ListOptions{Status: &revoked, ExpiringBefore: base.Add(3 * day)}, []string{"2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list, err := s.ListCertificates(t.Context(), tc.opts)
			require.NoError(t, err)
			assert.Equal(t, tc.want, serials(list))
		})
	}
}

func testRevokeFields(t *testing.T, s rootca.Store) {
	rec := record(serial(0xbeef), base)
	other := record(serial(0xcafe), base)
	addAll(t, s, rec, other)
	at := base.Add(-48*time.Hour + 987654321)

	rev, err := s.Revoke(t.Context(), rec.Serial, provider.ReasonKeyCompromise, at)
	require.NoError(t, err)
	require.NotNil(t, rev)
	assertRevocation(t, rec, provider.ReasonKeyCompromise, at, *rev)

	got, err := s.Certificate(t.Context(), rec.Serial)
	require.NoError(t, err)
	want := *rec
	want.Status, want.Reason, want.RevokedAt = provider.StatusRevoked, provider.ReasonKeyCompromise, at
	assertRecord(t, &want, got)

	got, err = s.Certificate(t.Context(), other.Serial)
	require.NoError(t, err)
	assertRecord(t, other, got) // untouched

	// ReasonUnspecified is code 0: still a revocation.
	rev, err = s.Revoke(t.Context(), other.Serial, provider.ReasonUnspecified, at)
	require.NoError(t, err)
	assertRevocation(t, other, provider.ReasonUnspecified, at, *rev)
	got, err = s.Certificate(t.Context(), other.Serial)
	require.NoError(t, err)
	assert.Equal(t, provider.StatusRevoked, got.Status)
}

func testRevokeTwice(t *testing.T, s rootca.Store) {
	rec := record(serial(0x77), base)
	addAll(t, s, rec)
	at := base.Add(-time.Hour)
	_, err := s.Revoke(t.Context(), rec.Serial, provider.ReasonCessationOfOperation, at)
	require.NoError(t, err)

	rev, err := s.Revoke(t.Context(), rec.Serial, provider.ReasonKeyCompromise, at.Add(time.Minute))
	assert.ErrorIs(t, err, provider.ErrAlreadyRevoked)
	assert.Nil(t, rev)

	got, err := s.Certificate(t.Context(), rec.Serial)
	require.NoError(t, err)
	assert.Equal(t, provider.StatusRevoked, got.Status)
	assert.Equal(t, provider.ReasonCessationOfOperation, got.Reason, "the first revocation stays")
	assertTime(t, at, got.RevokedAt, "the first revocation stays")
	revs, err := s.Revocations(t.Context())
	require.NoError(t, err)
	if assert.Len(t, revs, 1) {
		assertRevocation(t, rec, provider.ReasonCessationOfOperation, at, revs[0])
	}
}

func testRevokeUnknown(t *testing.T, s rootca.Store) {
	addAll(t, s, record(serial(0x10), base))
	rev, err := s.Revoke(t.Context(), serial(0x11), provider.ReasonKeyCompromise, base)
	assert.ErrorIs(t, err, provider.ErrNotFound)
	assert.Nil(t, rev)
	revs, err := s.Revocations(t.Context())
	require.NoError(t, err)
	assert.Empty(t, revs)
}

func testRevocationsOrder(t *testing.T, s rootca.Store) {
	recs := map[string]*provider.CertificateRecord{}
	for i, n := range []*big.Int{serial(0x100), serial(0x9), longSerial(), serial(0xa), serial(0x10), serial(0x5)} {
		rec := record(n, base.Add(time.Duration(i)*time.Hour))
		recs[provider.FormatSerial(n)] = rec
		addAll(t, s, rec)
	}
	type revocation struct {
		reason provider.RevocationReason
		at     time.Time
	}
	revoked := map[string]revocation{}
	// Revoke in an order that is neither numeric nor textual; leave 5
	// valid.
	for i, hex := range []string{"a", provider.FormatSerial(longSerial()), "100", "9", "10"} {
		r := revocation{provider.RevocationReason(i + 1), base.Add(-time.Duration(i+1) * time.Minute)}
		_, err := s.Revoke(t.Context(), recs[hex].Serial, r.reason, r.at)
		require.NoError(t, err)
		revoked[hex] = r
	}

	revs, err := s.Revocations(t.Context())
	require.NoError(t, err)
	got := make([]string, len(revs))
	for i, rev := range revs {
		got[i] = provider.FormatSerial(rev.Serial)
		if r, ok := revoked[got[i]]; assert.True(t, ok, "unexpected revocation %s", got[i]) {
			assertRevocation(t, recs[got[i]], r.reason, r.at, rev)
		}
	}
	assert.Equal(t, []string{"9", "a", "10", "100", provider.FormatSerial(longSerial())}, got)
}

func testNextCRLNumberSequence(t *testing.T, s rootca.Store) {
	for want := int64(1); want <= 5; want++ {
		n, err := s.NextCRLNumber(t.Context())
		require.NoError(t, err)
		require.NotNil(t, n)
		assert.Equal(t, want, n.Int64(), "CRL number %d", want)
	}
}

func testCopiesAuthority(t *testing.T, s rootca.Store) {
	in := testAuthority()
	require.NoError(t, s.CreateAuthority(t.Context(), in))
	in.Certificates[0][0] ^= 0xff
	in.Certificates[1] = []byte("replaced")
	in.Key[0] ^= 0xff

	out, err := s.LoadAuthority(t.Context())
	require.NoError(t, err)
	want := testAuthority()
	assert.Equal(t, want.Certificates, out.Certificates, "after changing the Authority passed in")
	assert.Equal(t, want.Key, out.Key, "after changing the Authority passed in")

	out.Certificates[0][0] ^= 0xff
	out.Certificates = append(out.Certificates, []byte("extra"))
	out.Key[0] ^= 0xff
	again, err := s.LoadAuthority(t.Context())
	require.NoError(t, err)
	assert.Equal(t, want.Certificates, again.Certificates, "after changing a loaded Authority")
	assert.Equal(t, want.Key, again.Key, "after changing a loaded Authority")
}

func testCopiesRecords(t *testing.T, s rootca.Store) {
	in := record(serial(0x5e), base)
	want := record(serial(0x5e), base)
	require.NoError(t, s.AddCertificate(t.Context(), in))
	// Change everything the record passed in shares.
	in.Serial.SetInt64(0x5f)
	in.DNSNames[0] = "changed.example.org"
	in.IPAddresses[0][15] = 99
	in.Raw[0] ^= 0xff

	check := func(what string) {
		t.Helper()
		got, err := s.Certificate(t.Context(), want.Serial)
		require.NoError(t, err, what)
		assertRecord(t, want, got)
	}
	check("after changing the record passed in")

	mutate := func(rec *provider.CertificateRecord) {
		rec.Serial.SetInt64(0x5f)
		rec.Subject = "CN=changed"
		rec.DNSNames[0] = "changed.example.org"
		rec.IPAddresses[0][0] ^= 0xff
		rec.Raw[0] ^= 0xff
	}
	got, err := s.Certificate(t.Context(), want.Serial)
	require.NoError(t, err)
	mutate(got)
	check("after changing a returned record")

	list, err := s.ListCertificates(t.Context(), nil)
	require.NoError(t, err)
	require.Len(t, list, 1)
	mutate(list[0])
	check("after changing a listed record")

	at := base.Add(-time.Hour)
	rev, err := s.Revoke(t.Context(), want.Serial, provider.ReasonSuperseded, at)
	require.NoError(t, err)
	rev.Serial.SetInt64(0x5f)
	revs, err := s.Revocations(t.Context())
	require.NoError(t, err)
	require.Len(t, revs, 1)
	revs[0].Serial.SetInt64(0x5f)
	again, err := s.Revocations(t.Context())
	require.NoError(t, err)
	if assert.Len(t, again, 1) {
		assertRevocation(t, want, provider.ReasonSuperseded, at, again[0])
	}
	_, err = s.Certificate(t.Context(), want.Serial)
	assert.NoError(t, err, "after changing returned revocations")
}

// testCancelledContext checks that every method fails with the context's
// error, and changes nothing.
func testCancelledContext(t *testing.T, s rootca.Store) {
	rec := record(serial(0xc0), base)
	addAll(t, s, rec)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	callEveryMethod(t, ctx, s, rec, serial(0xc1), context.Canceled)

	_, err := s.LoadAuthority(t.Context())
	assert.ErrorIs(t, err, provider.ErrNotFound, "no CA created")
	_, err = s.Certificate(t.Context(), serial(0xc1))
	assert.ErrorIs(t, err, provider.ErrNotFound, "no certificate added")
	got, err := s.Certificate(t.Context(), rec.Serial)
	require.NoError(t, err)
	assert.Equal(t, provider.StatusValid, got.Status, "not revoked")
	n, err := s.NextCRLNumber(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(1), n.Int64(), "CRL number not incremented")
}

// testClose checks that every method returns ErrStoreClosed after Close.
func testClose(t *testing.T, s rootca.Store) {
	ctx := t.Context()
	rec := record(serial(0xd0), base)
	addAll(t, s, rec)
	require.NoError(t, s.Close())

	callEveryMethod(t, ctx, s, rec, serial(0xd1), rootca.ErrStoreClosed)
}

// describe names a goroutine's failure for messages.
func describe(worker, i int) string { return fmt.Sprintf("worker %d, item %d", worker, i) }

// callEveryMethod calls each Store method with ctx, on the recorded rec
// and on a fresh serial, and checks that each fails with want.
func callEveryMethod(t *testing.T, ctx context.Context, s rootca.Store, rec *provider.CertificateRecord, fresh *big.Int, want error) {
	t.Helper()
	calls := []struct {
		name string
		call func() error
	}{
		{"LoadAuthority", func() error { _, err := s.LoadAuthority(ctx); return err }},
		{"CreateAuthority", func() error { return s.CreateAuthority(ctx, testAuthority()) }},
		{"AddCertificate", func() error { return s.AddCertificate(ctx, record(fresh, base)) }},
		{"Certificate", func() error { _, err := s.Certificate(ctx, rec.Serial); return err }},
		{"ListCertificates", func() error { _, err := s.ListCertificates(ctx, nil); return err }},
		{"Revoke", func() error {
			_, err := s.Revoke(ctx, rec.Serial, provider.ReasonKeyCompromise, base)
			return err
		}},
		{"Revocations", func() error { _, err := s.Revocations(ctx); return err }},
		{"NextCRLNumber", func() error { _, err := s.NextCRLNumber(ctx); return err }},
	}
	if feed, ok := s.(rootca.RevocationFeed); ok {
		calls = append(calls, struct {
			name string
			call func() error
		}{"RevocationsSince", func() error { _, _, err := feed.RevocationsSince(ctx, 0); return err }})
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			assert.ErrorIs(t, c.call(), want)
		})
	}
}
