package providertest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidSHA1WithRSA      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
)

// refusal is a request a provider must refuse.
type refusal struct {
	name string
	// edit turns a valid request, which names marker, into the one to
	// refuse.
	edit func(t *testing.T, req *provider.IssueRequest, marker string)
}

func (s *suite) refusals() []refusal {
	return []refusal{
		{name: "NoRole", edit: func(t *testing.T, req *provider.IssueRequest, _ string) {
			req.Role = provider.RoleUnspecified
		}},
		{name: "BadCSRSignature", edit: func(t *testing.T, req *provider.IssueRequest, marker string) {
			csr := newCSR(t, newECDSAKey(t), []string{marker}, nil)
			csr = slices.Clone(csr)
			// The CSR ends with its signature.
			csr[len(csr)-1] ^= 0x01
			parsed, err := x509.ParseCertificateRequest(csr)
			require.NoError(t, err, "the damaged CSR must still parse")
			require.Error(t, parsed.CheckSignature())
			req.CSR = csr
		}},
		{name: "WeakRSAKey", edit: func(t *testing.T, req *provider.IssueRequest, marker string) {
			_, weak := s.rsaKeys(t)
			req.CSR = newCSR(t, weak, []string{marker}, nil)
		}},
		{name: "CSRRequestsCA", edit: func(t *testing.T, req *provider.IssueRequest, marker string) {
			req.CSR = caCSR(t, newECDSAKey(t), marker)
		}},
		{name: "SHA1CSR", edit: func(t *testing.T, req *provider.IssueRequest, marker string) {
			key, _ := s.rsaKeys(t)
			req.CSR = sha1CSR(t, key, marker)
		}},
		{name: "MalformedCSR/garbage", edit: func(t *testing.T, req *provider.IssueRequest, _ string) {
			req.CSR = []byte("this is not a certificate request")
		}},
		{name: "MalformedCSR/truncated", edit: func(t *testing.T, req *provider.IssueRequest, marker string) {
			csr := newCSR(t, newECDSAKey(t), []string{marker}, nil)
			req.CSR = csr[:len(csr)-10]
		}},
		{name: "MalformedCSR/wrongPEMType", edit: func(t *testing.T, req *provider.IssueRequest, marker string) {
			csr := newCSR(t, newECDSAKey(t), []string{marker}, nil)
			req.CSR = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: csr})
		}},
		{name: "TooManyDNSNames", edit: func(t *testing.T, req *provider.IssueRequest, _ string) {
			for i := range 10000 {
				req.DNSNames = append(req.DNSNames, fmt.Sprintf("n%d.%s", i, s.domain))
			}
		}},
		{name: "IPLiteralDNSName", edit: func(t *testing.T, req *provider.IssueRequest, _ string) {
			// Go matches such a DNS name against the address, GnuTLS
			// does not: an address belongs among the IP addresses.
			req.DNSNames = append(req.DNSNames, "10.0.0.9")
		}},
		{name: "NULInDNSName", edit: func(t *testing.T, req *provider.IssueRequest, marker string) {
			req.DNSNames = append(req.DNSNames, "evil\x00."+marker)
		}},
		{name: "ValidityBeyondCA", edit: func(t *testing.T, req *provider.IssueRequest, _ string) {
			req.Validity = 200 * 365 * 24 * time.Hour
		}},
	}
}

func (s *suite) testRefusals(t *testing.T, p provider.Provider) {
	for _, r := range s.refusals() {
		s.run(t, r.name, func(t *testing.T) {
			// marker names the request, so that the inventory can be
			// searched for it.
			marker := s.name("refused")
			req := s.request(t, s.anyRole())
			req.DNSNames = []string{marker}
			if s.noKeyGen {
				req.CSR = s.csrFor(t, newECDSAKey(t), req)
			}
			r.edit(t, req, marker)

			res, err := p.Issue(t.Context(), req)
			require.Error(t, err, "the request must be refused")
			assert.ErrorIs(t, err, provider.ErrInvalidRequest)
			assert.Nil(t, res, "a refused request must return no result")

			if inv, ok := p.(provider.Inventory); ok {
				records, err := inv.ListCertificates(t.Context(), nil)
				require.NoError(t, err)
				for _, rec := range records {
					require.NotNil(t, rec, "ListCertificates returned a nil record")
					assert.NotContains(t, rec.DNSNames, marker, "a refused request left certificate %s in the inventory", provider.FormatSerial(rec.Serial))
				}
			}
		})
	}
}

// caCSR returns a CSR whose extensionRequest asks for basicConstraints
// CA:TRUE.
func caCSR(t *testing.T, key crypto.Signer, name string) []byte {
	t.Helper()
	bc, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{IsCA: true})
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: name},
		DNSNames:        []string{name},
		ExtraExtensions: []pkix.Extension{{Id: oidBasicConstraints, Critical: true, Value: bc}},
	}, key)
	require.NoError(t, err)
	return der
}

// sha1CSR returns a CSR signed with sha1WithRSAEncryption. crypto/x509
// refuses to create one, so the request info of a regular CSR is signed
// anew by hand.
func sha1CSR(t *testing.T, key *rsa.PrivateKey, name string) []byte {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(newCSR(t, key, []string{name}, nil))
	require.NoError(t, err)
	digest := sha1.Sum(csr.RawTBSCertificateRequest)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA1, digest[:])
	require.NoError(t, err)
	der, err := asn1.Marshal(struct {
		Info      asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{
		Info:      asn1.RawValue{FullBytes: csr.RawTBSCertificateRequest},
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidSHA1WithRSA, Parameters: asn1.NullRawValue},
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
	require.NoError(t, err)
	parsed, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err, "the SHA-1 CSR must parse")
	require.Equal(t, x509.SHA1WithRSA, parsed.SignatureAlgorithm)
	return der
}
