package pkicore

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// VerifyReason maps an error from [x509.Certificate.Verify] onto the
// sentinel a caller branches on, wrapping the original so its details stay
// visible: unknown authority (also a bad signature on the chain) gives
// [ErrUnknownAuthority], an expired or not yet valid certificate
// [ErrExpired], a usage the extended key usage does not allow
// [ErrIncompatibleUsage], and a name mismatch [ErrNameMismatch]. Any other
// error is returned wrapped in ErrUnknownAuthority, since a chain that does
// not verify does not reach a trusted CA. A nil error gives nil.
func VerifyReason(err error) error {
	if err == nil {
		return nil
	}
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
	)
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w: %w", ErrUnknownAuthority, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w: %w", ErrNameMismatch, err)
	case errors.As(err, &invalid):
		switch invalid.Reason {
		case x509.Expired:
			return fmt.Errorf("%w: %w", ErrExpired, err)
		case x509.IncompatibleUsage:
			return fmt.Errorf("%w: %w", ErrIncompatibleUsage, err)
		case x509.NameMismatch, x509.CANotAuthorizedForThisName:
			return fmt.Errorf("%w: %w", ErrNameMismatch, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrUnknownAuthority, err)
}
