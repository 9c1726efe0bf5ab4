package provider

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"
)

// OCSPStatus is a certificate's status in an OCSP response (RFC 6960,
// section 2.2). Its values are the tags of the CertStatus choice (good
// [0], revoked [1], unknown [2]), the numbers golang.org/x/crypto/ocsp
// uses too.
type OCSPStatus int

const (
	// OCSPGood: the CA issued the certificate and has not revoked it.
	OCSPGood OCSPStatus = iota
	// OCSPRevoked: the certificate is revoked.
	OCSPRevoked
	// OCSPUnknown: the CA does not know the serial.
	OCSPUnknown
)

// String returns "good", "revoked" or "unknown".
func (s OCSPStatus) String() string {
	switch s {
	case OCSPGood:
		return "good"
	case OCSPRevoked:
		return "revoked"
	case OCSPUnknown:
		return "unknown"
	}
	return fmt.Sprintf("OCSPStatus(%d)", int(s))
}

// OCSPResponseTemplate is what one OCSP response states: the status of
// one certificate at a time. The caller (package ca's responder) decides
// the status; an [OCSPSigner] encodes and signs it. It holds standard
// library types only, so that neither side has to share the other's OCSP
// library.
type OCSPResponseTemplate struct {
	// Issuer is the CA certificate that issued the certificate the
	// response is about: one of the provider's CACertificates (during a
	// CA rotation, the previous CA for the certificates it issued).
	// Required.
	Issuer *x509.Certificate
	// IssuerHash is the hash of the response's CertID, which must be the
	// request's. Zero means SHA-1, the one clients send.
	IssuerHash crypto.Hash
	// SerialNumber is the certificate's serial. Required.
	SerialNumber *big.Int
	// Status is the certificate's status. The zero value is OCSPGood.
	Status OCSPStatus
	// RevokedAt is the revocation time; required when Status is
	// OCSPRevoked, ignored otherwise.
	RevokedAt time.Time
	// Reason is the revocation reason when Status is OCSPRevoked;
	// ReasonUnspecified (the zero value) leaves the reason out, as RFC
	// 5280 recommends. ReasonRemoveFromCRL is refused.
	Reason RevocationReason
	// ThisUpdate is the time the status is known to be correct.
	// Required.
	ThisUpdate time.Time
	// NextUpdate is the time newer information will be available. Zero
	// leaves it out, which tells clients newer information is always
	// available (RFC 6960, section 4.2.2.1): set it, so they can cache.
	NextUpdate time.Time
}

// Validate reports whether t is complete and consistent, with a
// *[RequestError] naming the field when it is not. [SignOCSPResponse]
// calls it before handing t to the provider.
func (t *OCSPResponseTemplate) Validate() error {
	bad := func(field, reason string) error { return &RequestError{Field: field, Reason: reason} }
	switch {
	case t == nil:
		return bad("", "no OCSP response template")
	case t.Issuer == nil || len(t.Issuer.Raw) == 0:
		return bad("Issuer", "missing")
	case t.SerialNumber == nil || t.SerialNumber.Sign() < 0:
		return bad("SerialNumber", "missing or negative")
	case t.IssuerHash != 0 && !t.IssuerHash.Available():
		return bad("IssuerHash", fmt.Sprintf("hash %v is not available", t.IssuerHash))
	case t.Status < OCSPGood || t.Status > OCSPUnknown:
		return bad("Status", t.Status.String()+" is not an OCSP status")
	case t.ThisUpdate.IsZero():
		return bad("ThisUpdate", "missing")
	case !t.NextUpdate.IsZero() && !t.NextUpdate.After(t.ThisUpdate):
		return bad("NextUpdate", "not after ThisUpdate")
	}
	if t.Status == OCSPRevoked {
		switch {
		case t.RevokedAt.IsZero():
			return bad("RevokedAt", "missing for a revoked certificate")
		case !t.Reason.Valid() || t.Reason == ReasonRemoveFromCRL:
			return bad("Reason", fmt.Sprintf("%v is not a revocation reason", t.Reason))
		}
	}
	return nil
}

// OCSPSigner is a provider that signs RFC 6960 OCSP responses without
// handing out a key: the built-in rootca signs with the CA key it holds
// (an HSM or KMS key included); a provider whose CA key it cannot use
// (Vault, an ACME CA) can sign with a delegated responder key, whose
// certificate the CA issued with the id-kp-OCSPSigning extended key usage
// (RFC 6960, section 4.2.2.2), and which the response then carries.
type OCSPSigner interface {
	// SignOCSPResponse returns the DER OCSPResponse (successful, of type
	// id-pkix-ocsp-basic) stating tmpl, signed by tmpl.Issuer's key or
	// by a responder certificate tmpl.Issuer issued, in which case the
	// response carries it. A tmpl.Issuer that is not one of the
	// provider's CAs yields an error matching ErrInvalidRequest.
	SignOCSPResponse(ctx context.Context, tmpl *OCSPResponseTemplate) ([]byte, error)
}

// SignOCSPResponse checks tmpl ([OCSPResponseTemplate.Validate]) and has
// p sign it if p is an [OCSPSigner]; otherwise it returns an error
// matching errors.ErrUnsupported.
func SignOCSPResponse(ctx context.Context, p Provider, tmpl *OCSPResponseTemplate) ([]byte, error) {
	s, ok := p.(OCSPSigner)
	if !ok {
		return nil, lacks(p, "OCSP signing")
	}
	if err := tmpl.Validate(); err != nil {
		return nil, err
	}
	return s.SignOCSPResponse(ctx, tmpl)
}
