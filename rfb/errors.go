package rfb

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

var (
	// ErrProtocol is wrapped by every error about a message that breaks
	// the RFB or VeNCrypt protocol, or a limit of this package: a
	// malformed version string, an unknown message type, a rectangle
	// outside the framebuffer, an oversized reason string or name.
	ErrProtocol = errors.New("rfb: protocol violation")

	// ErrAuthFailed is wrapped by *AuthError: the server refused the
	// credentials (or its SecurityResult was a failure for another
	// reason, such as a password that is not set or has expired).
	ErrAuthFailed = errors.New("rfb: authentication failed")

	// ErrTLSClientRejected means the server closed the connection right
	// after a TLS handshake that succeeded on the client's side. QEMU with
	// verify-peer=on does this when the client certificate is missing,
	// issued by a CA it does not trust, expired or revoked: it checks the
	// certificate only after the handshake.
	ErrTLSClientRejected = errors.New("rfb: server closed the connection right after the TLS handshake: it rejected the TLS client; is the client certificate missing, untrusted, expired or revoked?")

	// ErrAnonymousTLS is wrapped by the errors for the anonymous TLS
	// VeNCrypt subtypes (TLSNone, TLSVnc, TLSPlain and the SASL and Ident
	// variants).
	ErrAnonymousTLS = errors.New("rfb: anonymous TLS VeNCrypt subtypes are not supported: Go's crypto/tls has no anonymous Diffie-Hellman cipher suites, and without a server certificate the connection is open to man-in-the-middle attacks")

	// ErrInsecureConfig is wrapped by the errors for configurations that
	// would weaken the connection: a method sending a password in clear
	// without its Insecure opt-in, or TLSConfig.InsecureSkipVerify, which
	// is always refused.
	ErrInsecureConfig = errors.New("rfb: insecure configuration refused")
)

// Certificate conditions, the same values as package provider's (and
// every kvmpki package's), so that errors.Is(err, provider.ErrRevoked)
// holds whichever package found the condition. A refused server
// certificate wraps one of the first four, and the crypto/x509 error
// with the details; ErrRevoked comes from a VerifyConnection hook that
// checks revocation, such as provider.VerifyServerConnection.
var (
	// ErrUnknownAuthority: the server certificate does not chain to
	// TLSConfig.RootCAs (or the system roots).
	ErrUnknownAuthority = pkicore.ErrUnknownAuthority
	// ErrNameMismatch: the server certificate is not valid for the name
	// or address dialled.
	ErrNameMismatch = pkicore.ErrNameMismatch
	// ErrExpired: the server certificate, or one of its chain, is
	// expired or not yet valid.
	ErrExpired = pkicore.ErrExpired
	// ErrIncompatibleUsage: the server certificate's extended key usage
	// does not allow server authentication.
	ErrIncompatibleUsage = pkicore.ErrIncompatibleUsage
	// ErrRevoked: a hook found the server certificate revoked.
	ErrRevoked = pkicore.ErrRevoked
)

// protocolError returns an error wrapping ErrProtocol.
func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// AuthError is a failed SecurityResult. It wraps ErrAuthFailed.
type AuthError struct {
	// Code is the SecurityResult value: 1 for failed, 2 for "too many
	// attempts".
	Code uint32
	// Reason is the server's reason string, with trailing NULs trimmed.
	// It is empty before RFB 3.8, where servers send none.
	Reason string
}

func (e *AuthError) Error() string {
	var b strings.Builder
	b.WriteString("rfb: authentication failed")
	if e.Code == 2 {
		b.WriteString(" (too many attempts)")
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, ": server says %q", e.Reason)
	}
	return b.String()
}

// Unwrap returns ErrAuthFailed.
func (e *AuthError) Unwrap() error { return ErrAuthFailed }

// RefusedError is a server refusing the connection before any
// authentication: an empty security type list (RFB 3.7 and 3.8) or a
// security type of 0 (RFB 3.3), for instance when TigerVNC blacklists the
// client's address.
type RefusedError struct {
	// Reason is the server's reason, empty if it sent none.
	Reason string
}

func (e *RefusedError) Error() string {
	if e.Reason == "" {
		return "rfb: server refused the connection without a reason"
	}
	return fmt.Sprintf("rfb: server refused the connection: %q", e.Reason)
}

// NoSecurityError means that none of the security methods the server
// offered is among those the client accepts. When the server offered
// anonymous TLS subtypes it wraps ErrAnonymousTLS.
type NoSecurityError struct {
	// Offered lists the server's security types, with VeNCrypt replaced
	// by the subtypes it offered.
	Offered []Security
	// Accepted lists the methods the client accepted.
	Accepted []Security
}

func (e *NoSecurityError) Error() string {
	msg := fmt.Sprintf("rfb: no acceptable security method: server offers %s, client accepts %s",
		joinSecurity(e.Offered), joinSecurity(e.Accepted))
	for _, s := range e.Offered {
		if s.anonymousTLS() {
			return msg + "; " + strings.TrimPrefix(ErrAnonymousTLS.Error(), "rfb: ")
		}
	}
	for _, s := range e.Offered {
		if s.cleartextPassword() && !containsSecurity(e.Accepted, s) {
			return msg + "; " + s.String() + " would send the password unencrypted and must be accepted explicitly"
		}
	}
	return msg
}

// Unwrap returns ErrAnonymousTLS when the server offered an anonymous TLS
// subtype, and nil otherwise.
func (e *NoSecurityError) Unwrap() error {
	for _, s := range e.Offered {
		if s.anonymousTLS() {
			return ErrAnonymousTLS
		}
	}
	return nil
}

func joinSecurity(list []Security) string {
	if len(list) == 0 {
		return "nothing"
	}
	parts := make([]string, len(list))
	for i, s := range list {
		parts[i] = s.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func containsSecurity(list []Security, s Security) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// rejectedError is ErrTLSClientRejected with the read error that showed
// it.
type rejectedError struct{ cause error }

func (e *rejectedError) Error() string {
	return ErrTLSClientRejected.Error() + " (" + strings.TrimPrefix(e.cause.Error(), "rfb: ") + ")"
}

func (e *rejectedError) Unwrap() []error { return []error{ErrTLSClientRejected, e.cause} }
