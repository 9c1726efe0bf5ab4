package libvirttls

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrUnsupportedDN is returned by [AllowedDN] for a subject whose GnuTLS
// string it cannot render with certainty, or that would widen a glob.
var ErrUnsupportedDN = errors.New("libvirttls: unsupported DN")

// gnutlsAttr returns the short name GnuTLS prints for the attribute
// types this package renders, and the ASN.1 string tags GnuTLS prints as
// text for it (others it prints as #hex). Each is checked against
// virt-pki-query-dn in the interop tests.
func gnutlsAttr(oid asn1.ObjectIdentifier) (name string, tags []int) {
	directoryString := []int{asn1.TagPrintableString, asn1.TagUTF8String}
	switch oid.String() {
	case "2.5.4.6":
		return "C", []int{asn1.TagPrintableString}
	case "2.5.4.8":
		return "ST", directoryString
	case "2.5.4.7":
		return "L", directoryString
	case "2.5.4.10":
		return "O", directoryString
	case "2.5.4.11":
		return "OU", directoryString
	case "2.5.4.3":
		return "CN", directoryString
	case "0.9.2342.19200300.100.1.25":
		return "DC", []int{asn1.TagIA5String}
	case "0.9.2342.19200300.100.1.1":
		return "UID", directoryString
	}
	return "", nil
}

// rawATV and rdnSET keep each value's ASN.1 string type, which decides
// how GnuTLS prints it. (encoding/asn1 parses a slice type whose name ends
// in SET as a SET OF.)
type rawATV struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

type rdnSET []rawATV

// AllowedDN returns cert's subject as libvirtd compares it with the
// patterns of tls_allowed_dn_list: the string of GnuTLS's
// gnutls_x509_crt_get_dn, which keeps the certificate's RDN order
// ("O=Example,CN=kvm1") and joins the attributes of a multi-valued RDN with
// '+'. Go's pkix.Name.String prints the reverse, which libvirt rejects.
//
// Only the attributes C, ST, L, O, OU, CN, DC and UID are rendered, and
// only values free of characters GnuTLS escapes (,+"\<>;=), of leading or
// trailing spaces, of control characters, and of the glob characters '*'
// and '?', which would make the entry match other names. Other subjects
// give an error wrapping [ErrUnsupportedDN]; virt-pki-query-dn prints their
// string.
func AllowedDN(cert *x509.Certificate) (string, error) {
	var rdns []rdnSET
	rest, err := asn1.Unmarshal(cert.RawSubject, &rdns)
	if err != nil || len(rest) > 0 {
		return "", fmt.Errorf("%w: subject does not parse", ErrUnsupportedDN)
	}
	if len(rdns) == 0 {
		return "", fmt.Errorf("%w: empty subject", ErrUnsupportedDN)
	}
	var b strings.Builder
	for i, rdn := range rdns {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, atv := range rdn {
			if j > 0 {
				b.WriteByte('+')
			}
			name, tags := gnutlsAttr(atv.Type)
			if name == "" {
				return "", fmt.Errorf("%w: attribute %s", ErrUnsupportedDN, atv.Type)
			}
			if atv.Value.Class != asn1.ClassUniversal || !slices.Contains(tags, atv.Value.Tag) {
				return "", fmt.Errorf("%w: %s has ASN.1 type %d, which GnuTLS prints in hex", ErrUnsupportedDN, name, atv.Value.Tag)
			}
			value := string(atv.Value.Bytes)
			if err := checkDNValue(value); err != nil {
				return "", fmt.Errorf("%w: %s: %w", ErrUnsupportedDN, name, err)
			}
			b.WriteString(name)
			b.WriteByte('=')
			b.WriteString(value)
		}
	}
	return b.String(), nil
}

func checkDNValue(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	if !utf8.ValidString(v) {
		return errors.New("invalid UTF-8")
	}
	if strings.HasPrefix(v, " ") || strings.HasSuffix(v, " ") || strings.HasPrefix(v, "#") {
		return errors.New("leading or trailing space, or leading '#'")
	}
	for _, r := range v {
		if strings.ContainsRune(",+\"\\<>;=*?'", r) || unicode.IsControl(r) {
			return fmt.Errorf("character %q", r)
		}
	}
	return nil
}
