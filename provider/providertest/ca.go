package providertest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

func (s *suite) testIdentity(t *testing.T, p provider.Provider) {
	s.run(t, "Name", func(t *testing.T) {
		assert.NotEmpty(t, p.Name())
		assert.Equal(t, p.Name(), p.Name(), "Name must be stable")
	})
	s.run(t, "Description", func(t *testing.T) {
		assert.NotEmpty(t, p.Description())
	})
}

// caInfo is what a provider's CACertificates says about its CA.
type caInfo struct {
	// certs is CACertificates as returned.
	certs []*x509.Certificate
	// roots holds the self-signed certificates of certs, intermediates
	// the others. A CA may issue from several intermediates (Let's
	// Encrypt), each listed before the root it chains to.
	roots, intermediates *x509.CertPool
}

// issuer returns the first CA certificate, the issuing CA of a CA with
// one.
func (c *caInfo) issuer() *x509.Certificate { return c.certs[0] }

// issuerOf returns the certificate of certs that signed leaf, failing t
// if none did.
func (c *caInfo) issuerOf(t *testing.T, leaf *x509.Certificate) *x509.Certificate {
	t.Helper()
	for _, ca := range c.certs {
		if bytes.Equal(ca.RawSubject, leaf.RawIssuer) && leaf.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	require.Failf(t, "unknown issuer", "%s (serial %s) is signed by none of CACertificates", leaf.Subject, provider.FormatSerial(leaf.SerialNumber))
	return nil
}

// checkChain checks that chain is a path from leaf up to a self-signed
// root through certificates of CACertificates, as IssueResult.Chain must
// be, and that leaf verifies against the roots for usage.
func (c *caInfo) checkChain(t *testing.T, leaf *x509.Certificate, chain []*x509.Certificate) {
	t.Helper()
	require.NotEmpty(t, chain, "Chain must hold the issuing CA up to the root")
	child := leaf
	for i, ca := range chain {
		require.NotNil(t, ca, "Chain[%d] is nil", i)
		assert.True(t, slices.ContainsFunc(c.certs, ca.Equal), "Chain[%d] (%s) must be among CACertificates", i, ca.Subject)
		assert.Equal(t, ca.RawSubject, child.RawIssuer, "Chain[%d] must be the issuer of the certificate before it", i)
		assert.NoError(t, child.CheckSignatureFrom(ca), "Chain[%d] (%s) must have signed the certificate before it", i, ca.Subject)
		child = ca
	}
	assert.True(t, isSelfSigned(chain[len(chain)-1]), "Chain must end with a self-signed root")
	_, err := leaf.Verify(x509.VerifyOptions{Roots: c.roots, Intermediates: c.intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	assert.NoError(t, err, "the certificate must verify to a root among CACertificates")
}

// verifyOptions returns options to verify a leaf for usage at the time
// the suite runs.
func (c *caInfo) verifyOptions(usage x509.ExtKeyUsage) x509.VerifyOptions {
	return x509.VerifyOptions{
		Roots:         c.roots,
		Intermediates: c.intermediates,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// caCertificates fetches and sanity-checks p's CA certificates, failing t
// if they are unusable.
func (s *suite) caCertificates(t *testing.T, p provider.Provider) *caInfo {
	t.Helper()
	certs, err := p.CACertificates(t.Context())
	require.NoError(t, err, "CACertificates")
	require.NotEmpty(t, certs, "CACertificates returned no certificates")
	info := &caInfo{
		certs:         certs,
		roots:         x509.NewCertPool(),
		intermediates: x509.NewCertPool(),
	}
	root := false
	for i, c := range certs {
		require.NotNil(t, c, "CACertificates()[%d] is nil", i)
		if isSelfSigned(c) {
			info.roots.AddCert(c)
			root = true
		} else {
			info.intermediates.AddCert(c)
		}
	}
	require.True(t, root, "CACertificates holds no self-signed root")
	return info
}

func (s *suite) testCACertificates(t *testing.T, p provider.Provider) {
	ca := s.caCertificates(t, p)

	s.run(t, "IssuingCA", func(t *testing.T) {
		c := ca.issuer()
		assert.True(t, c.BasicConstraintsValid && c.IsCA, "the first certificate must be a CA")
		assert.NotZero(t, c.KeyUsage&x509.KeyUsageCertSign, "the issuing CA must have keyCertSign")
		assert.NotEmpty(t, c.SubjectKeyId, "the issuing CA must have a subject key identifier")
	})

	s.run(t, "Chain", func(t *testing.T) {
		// Each CA certificate but a root is signed by one listed after
		// it: several issuing CAs each come before the root they chain
		// to, and rollover roots follow.
		for i, c := range ca.certs {
			assert.True(t, c.BasicConstraintsValid && c.IsCA, "certificate %d (%s) must be a CA", i, c.Subject)
			assertNoWeakSignature(t, c)
			if isSelfSigned(c) {
				continue
			}
			signed := slices.ContainsFunc(ca.certs[i+1:], func(next *x509.Certificate) bool {
				return bytes.Equal(next.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(next) == nil
			})
			assert.True(t, signed, "certificate %d (%s) must be signed by a certificate listed after it", i, c.Subject)
		}
		_, err := ca.issuer().Verify(x509.VerifyOptions{
			Roots:         ca.roots,
			Intermediates: ca.intermediates,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		assert.NoError(t, err, "the issuing CA must verify against the roots")
	})

	s.run(t, "Bundle", func(t *testing.T) {
		bundle, err := provider.CABundle(t.Context(), p)
		require.NoError(t, err)
		var got []*x509.Certificate
		for rest := bundle; len(bytes.TrimSpace(rest)) > 0; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			require.NotNil(t, block, "CABundle holds bytes that are not PEM")
			require.Equal(t, "CERTIFICATE", block.Type)
			c, err := x509.ParseCertificate(block.Bytes)
			require.NoError(t, err)
			got = append(got, c)
		}
		require.Len(t, got, len(ca.certs))
		for i := range got {
			assert.True(t, got[i].Equal(ca.certs[i]), "bundle certificate %d", i)
		}
	})
}

// assertNoWeakSignature fails t if c is signed with SHA-1 or MD5, which
// Go and GnuTLS refuse.
func assertNoWeakSignature(t *testing.T, c *x509.Certificate) {
	t.Helper()
	switch c.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.DSAWithSHA256, x509.ECDSAWithSHA1:
		t.Errorf("certificate %s is signed with %v", c.Subject, c.SignatureAlgorithm)
	case x509.UnknownSignatureAlgorithm:
		t.Errorf("certificate %s has an unknown signature algorithm", c.Subject)
	}
}
