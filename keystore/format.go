package keystore

import (
	"bytes"
	"fmt"
)

// Format is a keystore file format.
type Format int

const (
	// FormatUnknown is the zero Format. Where a format is chosen, it means
	// the default, PKCS #12.
	FormatUnknown Format = iota
	// FormatJKS is Sun's Java KeyStore format.
	FormatJKS
	// FormatPKCS12 is PKCS #12 (RFC 7292), Java's default since JDK 9.
	FormatPKCS12
)

// String returns "JKS", "PKCS12" or "unknown".
func (f Format) String() string {
	switch f {
	case FormatJKS:
		return "JKS"
	case FormatPKCS12:
		return "PKCS12"
	}
	return "unknown"
}

// ParseFormat maps "jks" and "pkcs12" (any case, also "p12") to a Format.
func ParseFormat(s string) (Format, error) {
	switch string(bytes.ToLower([]byte(s))) {
	case "jks":
		return FormatJKS, nil
	case "pkcs12", "p12":
		return FormatPKCS12, nil
	}
	return FormatUnknown, fmt.Errorf("keystore: unknown format %q (want jks or pkcs12)", s)
}

var (
	jksMagic   = []byte{0xfe, 0xed, 0xfe, 0xed}
	jceksMagic = []byte{0xce, 0xce, 0xce, 0xce}
)

// DetectFormat tells the format of a keystore from its first bytes, never
// from a file name. JCEKS is recognised and refused with an error wrapping
// errors.ErrUnsupported;
// anything else that is not JKS or a DER SEQUENCE is ErrUnknownFormat.
func DetectFormat(data []byte) (Format, error) {
	switch {
	case bytes.HasPrefix(data, jksMagic):
		return FormatJKS, nil
	case bytes.HasPrefix(data, jceksMagic):
		return FormatUnknown, unsupported("JCEKS keystores cannot be read; convert with keytool -importkeystore -deststoretype PKCS12")
	case len(data) >= 2 && data[0] == 0x30:
		// A DER SEQUENCE: PKCS #12's PFX. Its content decides the rest.
		return FormatPKCS12, nil
	case len(data) < 4 && (bytes.HasPrefix(jksMagic, data) || bytes.HasPrefix(jceksMagic, data)):
		return FormatUnknown, fmt.Errorf("%w: %d bytes", ErrTruncated, len(data))
	}
	return FormatUnknown, ErrUnknownFormat
}
