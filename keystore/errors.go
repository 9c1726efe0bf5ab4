package keystore

import (
	"errors"
	"fmt"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// Sentinel errors that callers branch on. Errors returned by this package
// wrap them (test with errors.Is) and add context.
var (
	// ErrUnknownFormat means the bytes are neither JKS nor PKCS #12.
	ErrUnknownFormat = errors.New("keystore: unknown keystore format")
	// ErrTruncated means the keystore ends before its structure does.
	ErrTruncated = errors.New("keystore: truncated keystore")
	// ErrMalformed means the keystore's structure is invalid.
	ErrMalformed = errors.New("keystore: malformed keystore")
	// ErrIncorrectPassword means the integrity check failed: the password
	// is wrong, or the file was altered.
	ErrIncorrectPassword = errors.New("keystore: keystore was tampered with, or password was incorrect")
	// ErrTooLarge means an input exceeds the package's size limits.
	ErrTooLarge = errors.New("keystore: input too large")
	// ErrWorkLimit means a keystore asks for more work than one parse
	// allows: more than MaxKDFIterations of key derivation in total, or
	// more than MaxSignatureChecks signature checks to build its chains.
	ErrWorkLimit = errors.New("keystore: keystore needs too much work to read")

	// ErrWrongEntryType means the alias names the other kind of entry.
	ErrWrongEntryType = errors.New("keystore: wrong entry type")

	// ErrInvalidPassword means a password Java cannot use: shorter than
	// MinPasswordLen, or not printable ASCII.
	ErrInvalidPassword = errors.New("keystore: invalid password")
	// ErrNoPassphrase means the properties file holds no keystore
	// passphrase, so there is no keystore to import into.
	ErrNoPassphrase = errors.New("keystore: no keystore.passphrase in properties")
	// ErrMalformedProperties means a properties file Java would refuse.
	ErrMalformedProperties = errors.New("keystore: malformed properties file")

	// ErrNoCertificateBlock means PEM input (a certificate file or a CA
	// bundle) holds no CERTIFICATE block.
	ErrNoCertificateBlock = errors.New("keystore: no CERTIFICATE PEM block")
	// ErrUnsupportedKey means a key type or size this package refuses.
	ErrUnsupportedKey = errors.New("keystore: unsupported key")
)

// The conditions every kvmpki package reports with the same values, so
// that errors.Is(err, provider.ErrExpired) holds for an expiry found here
// too.
var (
	// ErrKeyMismatch means a certificate's public key is not the key in the
	// keystore (or in cloud.key).
	ErrKeyMismatch = pkicore.ErrKeyMismatch
	// ErrExpired means a certificate of the host's credentials has expired
	// or is not valid yet.
	ErrExpired = pkicore.ErrExpired
	// ErrEntryNotFound means the keystore has no entry with the alias: the
	// module's ErrNotFound.
	ErrEntryNotFound = pkicore.ErrNotFound
	// ErrUnknownAuthority means a certificate does not chain to the CA
	// bundle; a *ChainError wraps it (or ErrExpired, ErrIncompatibleUsage).
	ErrUnknownAuthority = pkicore.ErrUnknownAuthority
)

// unsupported reports a recognised format or algorithm this package does
// not implement (JCEKS, RC2-encrypted PKCS #12, PBMAC1, ...). The error
// wraps errors.ErrUnsupported.
func unsupported(format string, args ...any) error {
	return fmt.Errorf("keystore: %s: %w", fmt.Sprintf(format, args...), errors.ErrUnsupported)
}

// ChainError reports a certificate that does not verify against the CA
// bundle (unknown authority, expired, wrong signature, ...). Err wraps the
// error from crypto/x509 in the matching sentinel (ErrExpired, else
// ErrUnknownAuthority), so errors.Is works on a *ChainError.
type ChainError struct {
	Subject string
	Err     error
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("keystore: certificate %q does not chain to the CA bundle: %v", e.Subject, e.Err)
}

func (e *ChainError) Unwrap() error { return e.Err }

// NotSecuredError is CheckSecured's verdict on credentials that are not
// complete and valid: File names the file at fault (empty when the fault
// is between files), Err the reason.
type NotSecuredError struct {
	File string
	Err  error
}

func (e *NotSecuredError) Error() string {
	if e.File == "" {
		return "keystore: host not secured: " + e.Err.Error()
	}
	return fmt.Sprintf("keystore: host not secured: %s: %v", e.File, e.Err)
}

func (e *NotSecuredError) Unwrap() error { return e.Err }
