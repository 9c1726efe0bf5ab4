package rootca

import (
	"context"
	"fmt"

	"github.com/kvmpki/kvmpki/internal/ocspx"
	"github.com/kvmpki/kvmpki/provider"
)

// SignOCSPResponse implements provider.OCSPSigner: it signs an RFC 6960
// OCSP response stating tmpl with the key of the CA generation whose
// certificate is tmpl.Issuer (Options.Signer's HSM or KMS key included),
// so that an OCSP responder needs no copy of the CA key. The response's
// responder ID is the CA's key hash, and its signature algorithm the
// one the CA signs certificates with. A tmpl.Issuer that is not a CA
// peers trust (the issuing one or, during a rotation, the previous one)
// yields an error matching provider.ErrInvalidRequest.
//
// The status is the caller's to decide; look it up with
// LookupCertificate.
func (ca *CA) SignOCSPResponse(ctx context.Context, tmpl *provider.OCSPResponseTemplate) ([]byte, error) {
	if err := tmpl.Validate(); err != nil {
		return nil, err
	}
	g := ca.generationOf(tmpl)
	if g == nil {
		// Perhaps another process began a rotation.
		if err := ca.refreshGenerations(ctx); err != nil {
			return nil, err
		}
		if g = ca.generationOf(tmpl); g == nil {
			return nil, &provider.RequestError{Field: "Issuer", Reason: "not a CA of this provider: " + tmpl.Issuer.Subject.String()}
		}
	}
	der, err := ocspx.Sign(tmpl, g.cert, g.signer, g.sigAlg)
	if err != nil {
		return nil, fmt.Errorf("rootca: sign OCSP response: %w", err)
	}
	return der, nil
}

// generationOf returns the trusted generation whose certificate is
// tmpl.Issuer, or nil.
func (ca *CA) generationOf(tmpl *provider.OCSPResponseTemplate) *generation {
	for _, g := range ca.auth.Load().trusted() {
		if g.cert.Equal(tmpl.Issuer) {
			return g
		}
	}
	return nil
}
