package providertest

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
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

// revoke revokes cert, naming it by serial and by certificate, as a
// caller that holds the certificate does (ACME revokes by certificate).
func (s *suite) revoke(t *testing.T, p provider.Provider, cert *x509.Certificate, reason provider.RevocationReason) (start, end time.Time) {
	t.Helper()
	start = time.Now()
	err := p.Revoke(t.Context(), &provider.RevokeRequest{Serial: cert.SerialNumber, Certificate: cert, Reason: reason})
	require.NoError(t, err, "Revoke")
	return start, time.Now()
}

// skipIfUnsupported skips t when err says, by the convention of
// provider.Unsupported, that the provider lacks what the check asked for.
func skipIfUnsupported(t *testing.T, err error, what string) {
	t.Helper()
	if errors.Is(err, errors.ErrUnsupported) && errors.Is(err, provider.ErrInvalidRequest) {
		t.Skipf("the provider does not support %s: %v", what, err)
	}
}

func (s *suite) testRevoke(t *testing.T, p provider.Provider) {
	s.run(t, "UnknownSerial", func(t *testing.T) {
		err := p.Revoke(t.Context(), &provider.RevokeRequest{Serial: unknownSerial(t)})
		skipIfUnsupported(t, err, "revocation by serial alone")
		assert.ErrorIs(t, err, provider.ErrNotFound)
	})
	s.run(t, "Revoke", func(t *testing.T) {
		it := s.issue(t, p, s.anyRole(), nil)
		s.revoke(t, p, it.cert(), provider.ReasonKeyCompromise)
	})
	s.run(t, "ByCertificate", func(t *testing.T) {
		c := s.issue(t, p, s.anyRole(), nil).cert()
		err := p.Revoke(t.Context(), &provider.RevokeRequest{Certificate: c, Reason: provider.ReasonSuperseded})
		skipIfUnsupported(t, err, "revocation by certificate")
		require.NoError(t, err, "Revoke with Certificate and no Serial")
		err = p.Revoke(t.Context(), &provider.RevokeRequest{Serial: c.SerialNumber, Certificate: c})
		assert.ErrorIs(t, err, provider.ErrAlreadyRevoked, "the revocation by certificate must have revoked the serial")
	})
	s.run(t, "AlreadyRevoked", func(t *testing.T) {
		it := s.issue(t, p, s.anyRole(), nil)
		s.revoke(t, p, it.cert(), provider.ReasonUnspecified)
		err := p.Revoke(t.Context(), &provider.RevokeRequest{Serial: it.cert().SerialNumber, Certificate: it.cert(), Reason: provider.ReasonSuperseded})
		assert.ErrorIs(t, err, provider.ErrAlreadyRevoked)
	})
}

// crlCapable reports whether p publishes CRLs, and how: "signer" for a
// provider.CRLSigner, "source" for a provider.CRLSource only.
func crlCapable(p provider.Provider) (string, bool) {
	if _, ok := p.(provider.CRLSigner); ok {
		return "signer", true
	}
	if _, ok := p.(provider.CRLSource); ok {
		return "source", true
	}
	return "", false
}

func (s *suite) testCRL(t *testing.T, p provider.Provider) {
	kind, ok := crlCapable(p)
	if !ok {
		t.Skip("provider implements neither provider.CRLSigner nor provider.CRLSource")
	}
	ca := s.caCertificates(t, p)
	if kind == "source" {
		s.testCRLSource(t, p, ca)
		return
	}
	signer := p.(provider.CRLSigner)
	revoked := s.issue(t, p, s.anyRole(), nil).cert()
	valid := s.issue(t, p, s.anyRole(), nil).cert()
	revokedFrom, revokedTo := s.revoke(t, p, revoked, provider.ReasonKeyCompromise)

	first, err := signer.SignCRL(t.Context())
	require.NoError(t, err, "SignCRL")
	require.NotNil(t, first)
	signedFrom := time.Now()
	crl, err := signer.SignCRL(t.Context())
	require.NoError(t, err, "SignCRL")
	require.NotNil(t, crl)

	s.run(t, "Signature", func(t *testing.T) {
		issuer := ca.issuerOf(t, revoked)
		assert.NoError(t, crl.CheckSignatureFrom(issuer), "the CRL must be signed by the issuing CA")
		assert.Equal(t, issuer.RawSubject, crl.RawIssuer, "CRL issuer")
		assert.Equal(t, issuer.SubjectKeyId, crl.AuthorityKeyId, "CRL authority key identifier")
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

// testCRLSource checks the CRLs a provider.CRLSource fetches: the CA
// publishes them on its own schedule, so a revocation made now need not be
// listed yet and the Entry and Number checks are skipped.
func (s *suite) testCRLSource(t *testing.T, p provider.Provider, ca *caInfo) {
	crls, err := provider.CRLs(t.Context(), p)
	if errors.Is(err, provider.ErrRetryLater) {
		t.Skipf("the CA has published no CRL yet: %v", err)
	}
	require.NoError(t, err, "CRLs")
	require.NotEmpty(t, crls, "CRLs returned no CRL")
	s.run(t, "Signature", func(t *testing.T) {
		issuing := false
		for i, crl := range crls {
			require.NotNil(t, crl, "CRLs()[%d]", i)
			signed := slices.ContainsFunc(ca.certs, func(c *x509.Certificate) bool { return crl.CheckSignatureFrom(c) == nil })
			assert.True(t, signed, "CRL %d must be signed by one of the CA certificates", i)
			issuing = issuing || slices.ContainsFunc(ca.certs, func(c *x509.Certificate) bool {
				return !isSelfSigned(c) && crl.CheckSignatureFrom(c) == nil
			}) || crl.CheckSignatureFrom(ca.issuer()) == nil
		}
		assert.True(t, issuing, "one CRL must be an issuing CA's")
	})
	s.run(t, "Entry", func(t *testing.T) { t.Skip("a CRLSource publishes revocations on the CA's schedule") })
	s.run(t, "Number", func(t *testing.T) {
		for i, crl := range crls {
			if assert.NotNil(t, crl.Number, "CRL %d number", i) {
				assertSerial(t, crl.Number)
			}
		}
	})
	s.run(t, "Update", func(t *testing.T) {
		for i, crl := range crls {
			assert.True(t, crl.NextUpdate.After(crl.ThisUpdate), "CRL %d: NextUpdate %v must be after ThisUpdate %v", i, crl.NextUpdate, crl.ThisUpdate)
			assert.False(t, crl.ThisUpdate.After(time.Now().Add(validityTolerance)), "CRL %d: ThisUpdate %v is in the future", i, crl.ThisUpdate)
		}
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
		role := s.anyRole()
		c := s.issue(t, p, role, nil).cert()
		rec := lookup(t, c.SerialNumber)
		assert.Zero(t, rec.Serial.Cmp(c.SerialNumber), "Serial")
		assert.Equal(t, c.Raw, rec.Raw, "Raw")
		assert.True(t, c.NotAfter.Equal(rec.NotAfter), "NotAfter %v, want %v", rec.NotAfter, c.NotAfter)
		assert.True(t, c.NotBefore.Equal(rec.NotBefore), "NotBefore %v, want %v", rec.NotBefore, c.NotBefore)
		assert.Equal(t, role.String(), rec.Role.String(), "Role")
		assert.Equal(t, provider.StatusValid, rec.Status, "Status")
		assert.Equal(t, c.Subject.String(), rec.Subject, "Subject")
		assert.ElementsMatch(t, c.DNSNames, rec.DNSNames, "DNSNames")
		assert.Len(t, rec.IPAddresses, len(c.IPAddresses), "IPAddresses")
	})
	s.run(t, "Revoked", func(t *testing.T) {
		c := s.issue(t, p, s.anyRole(), nil).cert()
		from, to := s.revoke(t, p, c, provider.ReasonSuperseded)
		rec := lookup(t, c.SerialNumber)
		assert.Equal(t, provider.StatusRevoked, rec.Status, "Status")
		assert.Equal(t, provider.ReasonSuperseded, rec.Reason, "Reason")
		assert.WithinRange(t, rec.RevokedAt, from.Add(-validityTolerance), to.Add(validityTolerance), "RevokedAt")
	})
	s.run(t, "List", func(t *testing.T) {
		c := s.issue(t, p, s.anyRole(), nil).cert()
		assert.True(t, has(list(t, nil), c.SerialNumber), "ListCertificates(nil) must list an issued certificate")
		assert.True(t, has(list(t, &provider.ListOptions{}), c.SerialNumber), "the zero ListOptions must list every certificate")
	})
	s.run(t, "Filters", func(t *testing.T) {
		valid := s.issue(t, p, s.anyRole(), nil).cert()
		revoked := s.issue(t, p, s.anyRole(), nil).cert()
		s.revoke(t, p, revoked, provider.ReasonCessationOfOperation)

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
		for _, role := range s.roles {
			it := s.issue(t, p, role, func(req *provider.IssueRequest) {
				if !s.fixedValidity {
					req.Validity = time.Hour
				}
			})
			old := it.cert()
			req := &provider.RenewRequest{Certificate: old}
			if !s.fixedValidity {
				req.Validity = 2 * time.Hour
			}
			res, err := r.Renew(t.Context(), req)
			if errors.Is(err, errors.ErrUnsupported) && errors.Is(err, provider.ErrInvalidRequest) && it.key != nil {
				// A CA that certifies a key only on a CSR signed with it
				// (ACME, RFC 8555 section 7.4) may refuse the form
				// without a CSR: prove possession of the same key.
				req.CSR = s.csrFor(t, it.key, it.req)
				res, err = r.Renew(t.Context(), req)
			}
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
			assert.Equal(t, role.String(), provider.RoleOf(c).String(), "role")
			if s.fixedValidity {
				assert.False(t, c.NotAfter.Before(old.NotAfter), "the successor's NotAfter %v must not be before %v", c.NotAfter, old.NotAfter)
			} else {
				assert.True(t, c.NotAfter.After(old.NotAfter), "the successor's NotAfter %v must be after %v", c.NotAfter, old.NotAfter)
			}
			assert.True(t, publicKeysEqual(old.PublicKey, c.PublicKey), "the successor certifies the same key")
			ca.checkChain(t, c, res.Chain)
		}
	})
	s.run(t, "NewKey", func(t *testing.T) {
		it := s.issue(t, p, s.anyRole(), nil)
		old := it.cert()
		key := newECDSAKey(t)
		res, err := r.Renew(t.Context(), &provider.RenewRequest{Certificate: old, CSR: s.csrFor(t, key, it.req)})
		require.NoError(t, err, "Renew")
		require.NotNil(t, res)
		require.NotNil(t, res.Certificate)
		assert.True(t, publicKeysEqual(key.Public(), res.Certificate.PublicKey), "the successor must certify the CSR's key")
		assert.Nil(t, res.PrivateKey, "PrivateKey must be nil when the request had a CSR")
		assert.ElementsMatch(t, old.DNSNames, res.Certificate.DNSNames, "DNS names")
	})
	s.run(t, "Revoked", func(t *testing.T) {
		old := s.issue(t, p, s.anyRole(), nil).cert()
		s.revoke(t, p, old, provider.ReasonSuperseded)
		res, err := r.Renew(t.Context(), &provider.RenewRequest{Certificate: old})
		assert.ErrorIs(t, err, provider.ErrRevoked, "renewing a revoked certificate must fail with ErrRevoked")
		assert.Nil(t, res)
	})
	s.run(t, "Foreign", func(t *testing.T) {
		old := s.issue(t, p, s.anyRole(), nil).cert()
		foreign := newForeignCA(t, ca.issuer()).leafLike(t, old)
		res, err := r.Renew(t.Context(), &provider.RenewRequest{Certificate: foreign})
		assert.ErrorIs(t, err, provider.ErrInvalidRequest, "renewing a certificate of another CA must fail with ErrInvalidRequest")
		assert.Nil(t, res)
	})
}
