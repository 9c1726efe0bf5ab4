package providertest

import (
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// unknownSerial returns a serial no provider has issued.
func unknownSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 150))
	require.NoError(t, err)
	return n.Add(n, big.NewInt(1))
}

func (s *suite) revoke(t *testing.T, p provider.Provider, serial *big.Int, reason provider.RevocationReason) (start, end time.Time) {
	t.Helper()
	start = time.Now()
	err := p.Revoke(t.Context(), &provider.RevokeRequest{Serial: serial, Reason: reason})
	require.NoError(t, err, "Revoke")
	return start, time.Now()
}

func (s *suite) testRevoke(t *testing.T, p provider.Provider) {
	s.run(t, "UnknownSerial", func(t *testing.T) {
		err := p.Revoke(t.Context(), &provider.RevokeRequest{Serial: unknownSerial(t)})
		assert.ErrorIs(t, err, provider.ErrNotFound)
	})
	s.run(t, "Revoke", func(t *testing.T) {
		it := s.issue(t, p, provider.RoleHost, nil)
		s.revoke(t, p, it.cert().SerialNumber, provider.ReasonKeyCompromise)
	})
	s.run(t, "AlreadyRevoked", func(t *testing.T) {
		it := s.issue(t, p, provider.RoleHost, nil)
		s.revoke(t, p, it.cert().SerialNumber, provider.ReasonUnspecified)
		err := p.Revoke(t.Context(), &provider.RevokeRequest{Serial: it.cert().SerialNumber, Reason: provider.ReasonSuperseded})
		assert.ErrorIs(t, err, provider.ErrAlreadyRevoked)
	})
}

func (s *suite) testCRL(t *testing.T, p provider.Provider) {
	signer, ok := p.(provider.CRLSigner)
	if !ok {
		t.Skip("provider does not implement provider.CRLSigner")
	}
	ca := s.caCertificates(t, p)
	revoked := s.issue(t, p, provider.RoleHost, nil).cert()
	valid := s.issue(t, p, provider.RoleHost, nil).cert()
	revokedFrom, revokedTo := s.revoke(t, p, revoked.SerialNumber, provider.ReasonKeyCompromise)

	first, err := signer.SignCRL(t.Context())
	require.NoError(t, err, "SignCRL")
	require.NotNil(t, first)
	signedFrom := time.Now()
	crl, err := signer.SignCRL(t.Context())
	require.NoError(t, err, "SignCRL")
	require.NotNil(t, crl)

	s.run(t, "Signature", func(t *testing.T) {
		assert.NoError(t, crl.CheckSignatureFrom(ca.issuer()), "the CRL must be signed by the issuing CA")
		assert.Equal(t, ca.issuer().RawSubject, crl.RawIssuer, "CRL issuer")
		assert.Equal(t, ca.issuer().SubjectKeyId, crl.AuthorityKeyId, "CRL authority key identifier")
	})
	s.run(t, "Entry", func(t *testing.T) {
		i := slices.IndexFunc(crl.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool {
			return e.SerialNumber.Cmp(revoked.SerialNumber) == 0
		})
		require.GreaterOrEqual(t, i, 0, "the CRL must list the revoked serial %s", provider.FormatSerial(revoked.SerialNumber))
		e := crl.RevokedCertificateEntries[i]
		assert.Equal(t, int(provider.ReasonKeyCompromise), e.ReasonCode, "revocation reason")
		assert.WithinRange(t, e.RevocationTime, revokedFrom.Add(-validityTolerance), revokedTo.Add(validityTolerance), "revocation time")
		for _, e := range crl.RevokedCertificateEntries {
			assert.NotEqual(t, 0, e.SerialNumber.Cmp(valid.SerialNumber), "the CRL must not list an unrevoked certificate")
		}
	})
	s.run(t, "Number", func(t *testing.T) {
		require.NotNil(t, first.Number, "CRL number")
		require.NotNil(t, crl.Number, "CRL number")
		assert.Positive(t, crl.Number.Cmp(first.Number), "CRL number %v must exceed the previous %v", crl.Number, first.Number)
		assertSerial(t, crl.Number) // the same 20-octet limit applies
	})
	s.run(t, "Update", func(t *testing.T) {
		assert.True(t, crl.NextUpdate.After(crl.ThisUpdate), "NextUpdate %v must be after ThisUpdate %v", crl.NextUpdate, crl.ThisUpdate)
		assert.False(t, crl.ThisUpdate.After(time.Now().Add(validityTolerance)), "ThisUpdate %v is in the future", crl.ThisUpdate)
		assert.True(t, crl.NextUpdate.After(signedFrom), "NextUpdate %v is in the past", crl.NextUpdate)
	})
}

func (s *suite) testInventory(t *testing.T, p provider.Provider) {
	inv, ok := p.(provider.Inventory)
	if !ok {
		t.Skip("provider does not implement provider.Inventory")
	}
	lookup := func(t *testing.T, serial *big.Int) *provider.CertificateRecord {
		t.Helper()
		rec, err := inv.LookupCertificate(t.Context(), serial)
		require.NoError(t, err, "LookupCertificate")
		require.NotNil(t, rec)
		require.NotNil(t, rec.Serial, "Serial")
		return rec
	}
	list := func(t *testing.T, opts *provider.ListOptions) []*provider.CertificateRecord {
		t.Helper()
		recs, err := inv.ListCertificates(t.Context(), opts)
		require.NoError(t, err, "ListCertificates")
		for i, r := range recs {
			require.NotNil(t, r, "ListCertificates()[%d]", i)
			require.NotNil(t, r.Serial, "ListCertificates()[%d].Serial", i)
		}
		assert.True(t, slices.IsSortedFunc(recs, func(a, b *provider.CertificateRecord) int {
			return a.NotAfter.Compare(b.NotAfter)
		}), "ListCertificates must sort by NotAfter")
		return recs
	}
	has := func(recs []*provider.CertificateRecord, serial *big.Int) bool {
		return slices.ContainsFunc(recs, func(r *provider.CertificateRecord) bool { return r.Serial.Cmp(serial) == 0 })
	}

	s.run(t, "Lookup", func(t *testing.T) {
		c := s.issue(t, p, provider.RoleClient, nil).cert()
		rec := lookup(t, c.SerialNumber)
		assert.Zero(t, rec.Serial.Cmp(c.SerialNumber), "Serial")
		assert.Equal(t, c.Raw, rec.Raw, "Raw")
		assert.True(t, c.NotAfter.Equal(rec.NotAfter), "NotAfter %v, want %v", rec.NotAfter, c.NotAfter)
		assert.True(t, c.NotBefore.Equal(rec.NotBefore), "NotBefore %v, want %v", rec.NotBefore, c.NotBefore)
		assert.Equal(t, provider.RoleClient, rec.Role, "Role")
		assert.Equal(t, provider.StatusValid, rec.Status, "Status")
		assert.Equal(t, c.Subject.String(), rec.Subject, "Subject")
		assert.ElementsMatch(t, c.DNSNames, rec.DNSNames, "DNSNames")
		assert.Len(t, rec.IPAddresses, len(c.IPAddresses), "IPAddresses")
	})
	s.run(t, "Revoked", func(t *testing.T) {
		c := s.issue(t, p, provider.RoleHost, nil).cert()
		from, to := s.revoke(t, p, c.SerialNumber, provider.ReasonSuperseded)
		rec := lookup(t, c.SerialNumber)
		assert.Equal(t, provider.StatusRevoked, rec.Status, "Status")
		assert.Equal(t, provider.ReasonSuperseded, rec.Reason, "Reason")
		assert.WithinRange(t, rec.RevokedAt, from.Add(-validityTolerance), to.Add(validityTolerance), "RevokedAt")
	})
	s.run(t, "List", func(t *testing.T) {
		c := s.issue(t, p, provider.RoleHost, nil).cert()
		assert.True(t, has(list(t, nil), c.SerialNumber), "ListCertificates(nil) must list an issued certificate")
		assert.True(t, has(list(t, &provider.ListOptions{}), c.SerialNumber), "the zero ListOptions must list every certificate")
	})
	s.run(t, "Filters", func(t *testing.T) {
		valid := s.issue(t, p, provider.RoleHost, nil).cert()
		revoked := s.issue(t, p, provider.RoleHost, nil).cert()
		s.revoke(t, p, revoked.SerialNumber, provider.ReasonCessationOfOperation)

		statusValid, statusRevoked := provider.StatusValid, provider.StatusRevoked
		recs := list(t, &provider.ListOptions{Status: &statusValid})
		assert.True(t, has(recs, valid.SerialNumber), "Status valid must list a valid certificate")
		assert.False(t, has(recs, revoked.SerialNumber), "Status valid must not list a revoked certificate")
		for _, r := range recs {
			assert.Equal(t, provider.StatusValid, r.Status)
		}
		recs = list(t, &provider.ListOptions{Status: &statusRevoked})
		assert.True(t, has(recs, revoked.SerialNumber), "Status revoked must list a revoked certificate")
		assert.False(t, has(recs, valid.SerialNumber), "Status revoked must not list a valid certificate")
		for _, r := range recs {
			assert.Equal(t, provider.StatusRevoked, r.Status)
		}

		recs = list(t, &provider.ListOptions{ExpiringBefore: valid.NotAfter.Add(time.Second)})
		assert.True(t, has(recs, valid.SerialNumber), "ExpiringBefore after NotAfter must list the certificate")
		recs = list(t, &provider.ListOptions{ExpiringBefore: valid.NotAfter})
		assert.False(t, has(recs, valid.SerialNumber), "ExpiringBefore equal to NotAfter must not list the certificate")
		for _, r := range recs {
			assert.True(t, r.NotAfter.Before(valid.NotAfter), "record %s expires at %v", provider.FormatSerial(r.Serial), r.NotAfter)
		}
	})
	s.run(t, "UnknownSerial", func(t *testing.T) {
		_, err := inv.LookupCertificate(t.Context(), unknownSerial(t))
		assert.ErrorIs(t, err, provider.ErrNotFound)
	})
}

func (s *suite) testRenew(t *testing.T, p provider.Provider) {
	r, ok := p.(provider.Renewer)
	if !ok {
		t.Skip("provider does not implement provider.Renewer")
	}
	ca := s.caCertificates(t, p)

	s.run(t, "Successor", func(t *testing.T) {
		for _, role := range roles {
			old := s.issue(t, p, role, func(req *provider.IssueRequest) { req.Validity = time.Hour }).cert()
			res, err := r.Renew(t.Context(), &provider.RenewRequest{Certificate: old, Validity: 2 * time.Hour})
			require.NoError(t, err, "Renew")
			require.NotNil(t, res)
			require.NotNil(t, res.Certificate)
			c := res.Certificate
			assert.NotEqual(t, 0, c.SerialNumber.Cmp(old.SerialNumber), "the successor needs a serial of its own")
			assertSerial(t, c.SerialNumber)
			assert.ElementsMatch(t, old.DNSNames, c.DNSNames, "DNS names")
			assert.Len(t, c.IPAddresses, len(old.IPAddresses), "IP addresses")
			for _, ip := range old.IPAddresses {
				assert.True(t, containsIP(c.IPAddresses, ip), "IP address %v", ip)
			}
			assert.Equal(t, role, provider.RoleOf(c), "role")
			assert.True(t, c.NotAfter.After(old.NotAfter), "the successor's NotAfter %v must be after %v", c.NotAfter, old.NotAfter)
			assert.True(t, publicKeysEqual(old.PublicKey, c.PublicKey), "without a CSR the successor certifies the same key")
			assert.NoError(t, c.CheckSignatureFrom(ca.issuer()), "the successor must be signed by the issuing CA")
		}
	})
	s.run(t, "NewKey", func(t *testing.T) {
		old := s.issue(t, p, provider.RoleHost, nil).cert()
		key := newECDSAKey(t)
		res, err := r.Renew(t.Context(), &provider.RenewRequest{Certificate: old, CSR: newCSR(t, key, nil, nil)})
		require.NoError(t, err, "Renew")
		require.NotNil(t, res)
		require.NotNil(t, res.Certificate)
		assert.True(t, publicKeysEqual(key.Public(), res.Certificate.PublicKey), "the successor must certify the CSR's key")
		assert.Nil(t, res.PrivateKey, "PrivateKey must be nil when the request had a CSR")
		assert.ElementsMatch(t, old.DNSNames, res.Certificate.DNSNames, "DNS names")
	})
	s.run(t, "Revoked", func(t *testing.T) {
		old := s.issue(t, p, provider.RoleHost, nil).cert()
		s.revoke(t, p, old.SerialNumber, provider.ReasonSuperseded)
		res, err := r.Renew(t.Context(), &provider.RenewRequest{Certificate: old})
		assert.Error(t, err, "renewing a revoked certificate must fail")
		assert.Nil(t, res)
	})
	s.run(t, "Foreign", func(t *testing.T) {
		old := s.issue(t, p, provider.RoleHost, nil).cert()
		foreign := newForeignCA(t, ca.issuer()).leafLike(t, old)
		res, err := r.Renew(t.Context(), &provider.RenewRequest{Certificate: foreign})
		assert.Error(t, err, "renewing a certificate of another CA must fail")
		assert.Nil(t, res)
	})
}
