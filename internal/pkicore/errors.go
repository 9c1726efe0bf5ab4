package pkicore

import "errors"

// Sentinel errors shared by every kvmpki package. Their messages carry no
// package prefix: the error that wraps one names the package and the
// certificate.
var (
	// ErrRevoked means a certificate has been revoked.
	ErrRevoked = errors.New("certificate revoked")
	// ErrExpired means a certificate is outside its validity period
	// (expired or not yet valid).
	ErrExpired = errors.New("certificate expired or not yet valid")
	// ErrUnknownAuthority means a certificate does not chain to a trusted
	// CA.
	ErrUnknownAuthority = errors.New("certificate not issued by a trusted CA")
	// ErrNoPeerCertificate means a TLS peer presented no certificate where
	// one is required.
	ErrNoPeerCertificate = errors.New("peer presented no certificate")
	// ErrIncompatibleUsage means a certificate's extended key usage does
	// not allow the use it was put to.
	ErrIncompatibleUsage = errors.New("certificate not valid for this usage")
	// ErrNameMismatch means a certificate is not valid for the name or
	// address that was dialled.
	ErrNameMismatch = errors.New("certificate not valid for the requested name")
	// ErrKeyMismatch means a certificate does not certify the private key
	// it is paired with.
	ErrKeyMismatch = errors.New("certificate does not match the private key")
	// ErrNotFound means a looked-up certificate or entry does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyRevoked means a revocation named a certificate that is
	// already revoked.
	ErrAlreadyRevoked = errors.New("certificate already revoked")
	// ErrInvalidRequest means a request broke a contract or a policy.
	ErrInvalidRequest = errors.New("invalid request")
)
