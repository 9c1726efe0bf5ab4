// Package storecheck holds what every rootca Store of this module shares:
// the sentinels, the checks of values going in, and the normal form of
// values coming out, so that rootca.MemStore and the SQL stores of
// rootca/sqlstore accept and return the same values. Package rootca
// re-exports the sentinels.
package storecheck

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kvmpki/kvmpki/provider"
)

var (
	// ErrAuthorityExists is returned by CreateAuthority when the store
	// already holds an authority.
	ErrAuthorityExists = errors.New("rootca: store already holds a CA")
	// ErrDuplicateSerial is returned by AddCertificate when the serial
	// is already recorded.
	ErrDuplicateSerial = errors.New("rootca: duplicate serial number")
	// ErrStoreClosed is returned by a store used after Close.
	ErrStoreClosed = errors.New("rootca: store closed")
	// ErrNoAuthority is returned by LoadAuthority on an empty store.
	ErrNoAuthority = fmt.Errorf("rootca: store holds no CA: %w", provider.ErrNotFound)
)

// maxSerialBits bounds serial numbers to RFC 5280's 20 octets, as
// provider.ParseSerial bounds them to 40 hexadecimal digits.
const maxSerialBits = 160

// NotFound is the error for an unknown serial.
func NotFound(serial *big.Int) error {
	return fmt.Errorf("rootca: certificate %s: %w", provider.FormatSerial(serial), provider.ErrNotFound)
}

// AlreadyRevoked is the error for revoking a revoked certificate.
func AlreadyRevoked(serial *big.Int) error {
	return fmt.Errorf("rootca: certificate %s: %w", provider.FormatSerial(serial), provider.ErrAlreadyRevoked)
}

// DuplicateSerial is the error for recording a serial twice.
func DuplicateSerial(serial *big.Int) error {
	return fmt.Errorf("%w %s", ErrDuplicateSerial, provider.FormatSerial(serial))
}

// Serial refuses a missing, non-positive or over-long serial.
func Serial(serial *big.Int) error {
	switch {
	case serial == nil:
		return errors.New("rootca: missing serial number")
	case serial.Sign() <= 0:
		return fmt.Errorf("rootca: serial number %s is not positive", serial)
	case serial.BitLen() > maxSerialBits:
		return fmt.Errorf("rootca: serial number %s is longer than 20 octets", provider.FormatSerial(serial))
	}
	return nil
}

// Time refuses times that do not fit the four-digit years of X.509
// GeneralizedTime, and with them the fixed-width text the SQL stores sort
// by.
func Time(field string, t time.Time) error {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("rootca: %s year %d outside 0 to 9999", field, y)
	}
	return nil
}

// Authority checks the chain of an authority to create; certs is nil for
// a nil authority.
func Authority(certs [][]byte, isNil bool) error {
	if isNil {
		return errors.New("rootca: create authority: nil authority")
	}
	if len(certs) == 0 {
		return errors.New("rootca: create authority: no certificates")
	}
	for i, der := range certs {
		if len(der) == 0 {
			return fmt.Errorf("rootca: create authority: certificate %d is empty", i)
		}
	}
	return nil
}

// Record checks a certificate record to add.
func Record(rec *provider.CertificateRecord) error {
	if rec == nil {
		return errors.New("rootca: add certificate: nil record")
	}
	if err := Serial(rec.Serial); err != nil {
		return err
	}
	s := provider.FormatSerial(rec.Serial)
	if rec.Status != provider.StatusValid {
		return fmt.Errorf("rootca: add certificate %s: status is %s, want valid", s, rec.Status)
	}
	if !rec.RevokedAt.IsZero() || rec.Reason != provider.ReasonUnspecified {
		return fmt.Errorf("rootca: add certificate %s: revocation fields set on a valid certificate", s)
	}
	if err := text("subject", rec.Subject); err != nil {
		return fmt.Errorf("rootca: add certificate %s: %w", s, err)
	}
	for _, name := range rec.DNSNames {
		if err := text("DNS name", name); err != nil {
			return fmt.Errorf("rootca: add certificate %s: %w", s, err)
		}
	}
	if len(rec.Raw) == 0 {
		return fmt.Errorf("rootca: add certificate %s: no DER certificate", s)
	}
	for _, ip := range rec.IPAddresses {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return fmt.Errorf("rootca: add certificate %s: IP address of %d bytes", s, len(ip))
		}
	}
	if err := Time("not before", rec.NotBefore); err != nil {
		return err
	}
	return Time("not after", rec.NotAfter)
}

// text refuses strings that not every database stores intact: invalid
// UTF-8 and NUL bytes.
func text(field, s string) error {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q is not valid UTF-8 text", field, s)
	}
	return nil
}

// Revocation checks the arguments of a revocation.
func Revocation(serial *big.Int, reason provider.RevocationReason, at time.Time) error {
	if err := Serial(serial); err != nil {
		return err
	}
	if !reason.Valid() {
		return fmt.Errorf("rootca: revoke %s: invalid reason %d", provider.FormatSerial(serial), int(reason))
	}
	if at.IsZero() {
		return fmt.Errorf("rootca: revoke %s: zero revocation time", provider.FormatSerial(serial))
	}
	return Time("revocation", at)
}

// NormalizeIP returns a copy of ip, 4 bytes long if it is an IPv4 address.
func NormalizeIP(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return slices.Clone(v4)
	}
	return slices.Clone(ip)
}
