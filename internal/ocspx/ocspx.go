// Package ocspx turns a provider.OCSPResponseTemplate into a signed RFC
// 6960 response with golang.org/x/crypto/ocsp: the one encoding rootca
// (signing with its CA key) and ca (signing with a platform-supplied
// responder) share. provider itself stays free of x/crypto.
package ocspx

import (
	"crypto"
	"crypto/x509"

	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/provider"
)

// Sign encodes tmpl and signs it with signer, whose certificate is
// responder: the issuing CA itself, or a delegated responder the CA
// issued, which is then included in the response so clients can check
// it. A zero sigAlg lets x/crypto/ocsp choose from the key. tmpl must
// have been validated.
func Sign(tmpl *provider.OCSPResponseTemplate, responder *x509.Certificate, signer crypto.Signer, sigAlg x509.SignatureAlgorithm) ([]byte, error) {
	resp := ocsp.Response{
		Status:             int(tmpl.Status), // the CertStatus tag, as provider.OCSPStatus numbers it
		SerialNumber:       tmpl.SerialNumber,
		IssuerHash:         tmpl.IssuerHash,
		ThisUpdate:         tmpl.ThisUpdate,
		NextUpdate:         tmpl.NextUpdate,
		SignatureAlgorithm: sigAlg,
	}
	if tmpl.Status == provider.OCSPRevoked {
		resp.RevokedAt, resp.RevocationReason = tmpl.RevokedAt, int(tmpl.Reason)
	}
	if !responder.Equal(tmpl.Issuer) {
		resp.Certificate = responder
	}
	return ocsp.CreateResponse(tmpl.Issuer, responder, resp, signer)
}
