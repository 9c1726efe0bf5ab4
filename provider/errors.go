package provider

import (
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// Sentinel errors. Providers wrap them, so callers test with [errors.Is].
// The certificate conditions are the same values every kvmpki package
// uses (keystore, libvirttls, migration and rfb re-export them), so
// errors.Is(err, ErrRevoked) holds for a revocation found by any of them.
var (
	// ErrRevoked means a certificate has been revoked. [*RevokedError]
	// carries the details.
	ErrRevoked = pkicore.ErrRevoked
	// ErrExpired means a certificate is outside its validity period
	// (expired or not yet valid).
	ErrExpired = pkicore.ErrExpired
	// ErrUnknownAuthority means a certificate does not chain to the CA.
	ErrUnknownAuthority = pkicore.ErrUnknownAuthority
	// ErrNoCertificate means a peer presented no certificate where one is
	// required.
	ErrNoCertificate = pkicore.ErrNoPeerCertificate
	// ErrIncompatibleUsage means a certificate's extended key usage does
	// not allow the use it was put to (a client-only certificate used as a
	// TLS server, say).
	ErrIncompatibleUsage = pkicore.ErrIncompatibleUsage
	// ErrNameMismatch means a server certificate is not valid for the name
	// or address that was dialled.
	ErrNameMismatch = pkicore.ErrNameMismatch
	// ErrNotFound means no certificate has the given serial.
	ErrNotFound = pkicore.ErrNotFound
	// ErrAlreadyRevoked means a revocation named a certificate that is
	// already revoked.
	ErrAlreadyRevoked = pkicore.ErrAlreadyRevoked
	// ErrInvalidRequest means a request broke the contract or the
	// provider's policy. [*RequestError] carries the details.
	ErrInvalidRequest = pkicore.ErrInvalidRequest
	// ErrUnknownProvider means a [Registry] has no provider of that name.
	ErrUnknownProvider = errors.New("provider: unknown provider")
	// ErrRetryLater means the CA refused for now (it is rate-limiting, or
	// not ready: an ACME order still pending, a sealed Vault) and the
	// same request may succeed later. [*RetryLaterError] carries the
	// time to retry at, when the CA said.
	ErrRetryLater = errors.New("provider: CA asks to retry later")
)

// Unsupported returns the error a provider gives for a request that uses
// a field, or a value of a field, that the provider does not support (a
// role it cannot issue, IP addresses for an ACME CA, a revocation by
// serial alone): a *[RequestError] for field that matches both
// [ErrInvalidRequest] and [errors.ErrUnsupported]. Callers that can do
// without the feature test errors.Is(err, errors.ErrUnsupported) and try
// again without it; a missing capability (an interface the provider does
// not implement) matches errors.ErrUnsupported alone.
func Unsupported(field, reason string) *RequestError {
	return &RequestError{Field: field, Reason: reason, Err: errors.ErrUnsupported}
}

// RetryLaterError reports that the CA refused for now. It matches
// [ErrRetryLater] and unwraps to Err, the CA's own error, if set.
type RetryLaterError struct {
	// After is the time from which the CA said a retry may succeed
	// (ACME's Retry-After). Zero means the CA did not say: back off as
	// usual.
	After time.Time
	// Err is the underlying error, if any.
	Err error
}

func (e *RetryLaterError) Error() string {
	msg := "provider: CA asks to retry later"
	if !e.After.IsZero() {
		msg = "provider: CA asks to retry after " + e.After.UTC().Format(time.RFC3339)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrRetryLater.
func (e *RetryLaterError) Is(target error) bool { return target == ErrRetryLater }

// Unwrap returns Err.
func (e *RetryLaterError) Unwrap() error { return e.Err }

// RequestError reports an issue, revoke or verify request that was
// refused. Field names the offending part of the request ("csr", "dns",
// "ip", "validity", ...). It unwraps to [ErrInvalidRequest] and to Err,
// if set; [Unsupported] sets Err to [errors.ErrUnsupported].
type RequestError struct {
	Field  string
	Reason string
	Err    error
}

func (e *RequestError) Error() string {
	msg := "provider: invalid request"
	if e.Field != "" {
		msg += ": " + e.Field
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns ErrInvalidRequest and the underlying error, if any.
func (e *RequestError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalidRequest, e.Err}
	}
	return []error{ErrInvalidRequest}
}

// RevokedError reports a revoked certificate. It matches [ErrRevoked].
type RevokedError struct {
	Serial    *big.Int
	Reason    RevocationReason
	RevokedAt time.Time
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("provider: certificate serial %s revoked at %s (reason %s)",
		FormatSerial(e.Serial), e.RevokedAt.UTC().Format(time.RFC3339), e.Reason)
}

// Is reports whether target is ErrRevoked.
func (e *RevokedError) Is(target error) bool { return target == ErrRevoked }

// VerifyError reports why a peer certificate was refused. It unwraps to the
// reason, which matches one of the sentinels ([ErrRevoked], [ErrExpired],
// [ErrUnknownAuthority], [ErrIncompatibleUsage], [ErrNameMismatch],
// [ErrNoCertificate]).
type VerifyError struct {
	// Subject and Serial identify the refused certificate; both are empty
	// when the peer presented none.
	Subject string
	Serial  *big.Int
	Err     error
}

func (e *VerifyError) Error() string {
	reason := "unknown reason"
	if e.Err != nil {
		reason = e.Err.Error()
	}
	if e.Serial == nil {
		return "provider: peer refused: " + reason
	}
	return fmt.Sprintf("provider: peer certificate %q (serial %s) refused: %s", e.Subject, FormatSerial(e.Serial), reason)
}

func (e *VerifyError) Unwrap() error { return e.Err }

// FormatSerial formats a serial number as lower-case hexadecimal without
// separators, as CloudStack's revokeCertificate API and OpenSSL print it.
func FormatSerial(serial *big.Int) string {
	if serial == nil {
		return "<nil>"
	}
	return serial.Text(16)
}

// ParseSerial parses a hexadecimal serial number. Colons, as OpenSSL's
// -text output prints them, and an optional 0x prefix are accepted.
func ParseSerial(s string) (*big.Int, error) {
	body := s
	if len(body) > 2 && (body[:2] == "0x" || body[:2] == "0X") {
		body = body[2:]
	}
	clean := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == ':':
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			clean = append(clean, c)
		default:
			return nil, fmt.Errorf("provider: serial %q: want 1 to 40 hexadecimal digits", s)
		}
	}
	if len(clean) == 0 {
		return nil, fmt.Errorf("provider: serial %q: want 1 to 40 hexadecimal digits", s)
	}
	n, _ := new(big.Int).SetString(string(clean), 16)
	// RFC 5280 serials are positive and at most 20 octets in DER, where a
	// leading zero octet keeps the value positive: at most 159 bits.
	if n.Sign() <= 0 || n.BitLen() > 159 {
		return nil, fmt.Errorf("provider: serial %q is not a positive number of at most 20 octets", s)
	}
	return n, nil
}
