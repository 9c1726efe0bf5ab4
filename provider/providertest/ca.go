package providertest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
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
	// chain is the prefix of certs from the issuing CA up to the first
	// self-signed certificate, the expected IssueResult.Chain; the
	// certificates after it are further roots (a rollover).
	chain []*x509.Certificate
	// roots holds the self-signed certificates of certs, intermediates
	// the others.
	roots, intermediates *x509.CertPool
}

// issuer returns the issuing CA certificate.
func (c *caInfo) issuer() *x509.Certificate { return c.chain[0] }

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
	for i, c := range certs {
		require.NotNil(t, c, "CACertificates()[%d] is nil", i)
		if isSelfSigned(c) {
			info.roots.AddCert(c)
			if info.chain == nil {
				info.chain = certs[:i+1]
			}
		} else {
			info.intermediates.AddCert(c)
		}
	}
	require.NotNil(t, info.chain, "CACertificates holds no self-signed root")
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
		for i, c := range ca.chain[:len(ca.chain)-1] {
			next := ca.chain[i+1]
			assert.NoError(t, c.CheckSignatureFrom(next), "certificate %d (%s) must be signed by certificate %d (%s)", i, c.Subject, i+1, next.Subject)
			assert.Equal(t, next.RawSubject, c.RawIssuer, "certificate %d must name certificate %d as issuer", i, i+1)
		}
		for i, c := range ca.certs {
			assert.True(t, c.BasicConstraintsValid && c.IsCA, "certificate %d (%s) must be a CA", i, c.Subject)
			assertNoWeakSignature(t, c)
		}
		// The rest, past the chain, are rollover roots.
		for i, c := range ca.certs[len(ca.chain):] {
			assert.True(t, isSelfSigned(c), "certificate %d after the root must be another self-signed root", len(ca.chain)+i)
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
