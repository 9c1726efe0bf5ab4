package rootca

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxDNLength bounds the DN strings ParseDN accepts.
const maxDNLength = 1024

var dnAttributeTypes = map[string]asn1.ObjectIdentifier{
	"CN":           {2, 5, 4, 3},
	"SERIALNUMBER": {2, 5, 4, 5},
	"C":            {2, 5, 4, 6},
	"L":            {2, 5, 4, 7},
	"ST":           {2, 5, 4, 8},
	"STREET":       {2, 5, 4, 9},
	"O":            {2, 5, 4, 10},
	"OU":           {2, 5, 4, 11},
	"DC":           {0, 9, 2342, 19200300, 100, 1, 25},
	"UID":          {0, 9, 2342, 19200300, 100, 1, 1},
}

// ParseDN parses a distinguished name in the RFC 4514 string form, such as
// CloudStack's ca.plugin.root.issuer.dn "CN=ca.cloudstack.apache.org".
// As RFC 4514 prescribes, the string lists the RDNs last-first: "CN=ca,O=Org"
// encodes as O=Org followed by CN=ca, which is how OpenSSL's -nameopt
// RFC2253 and Go's pkix.Name.String print it. The returned Name encodes
// exactly these RDNs, in that order.
//
// Attribute types CN, O, OU, C, ST, L, STREET, SERIALNUMBER, DC and UID are
// known; multi-valued RDNs ('+') are not supported. Values may use the RFC
// 4514 escapes (\, \+ \" \\ \< \> \; \= and \XX).
func ParseDN(s string) (pkix.Name, error) {
	var name pkix.Name
	if len(s) > maxDNLength {
		return name, fmt.Errorf("rootca: DN of %d bytes is longer than %d", len(s), maxDNLength)
	}
	if strings.TrimSpace(s) == "" {
		return name, fmt.Errorf("rootca: empty DN")
	}
	rdns, err := splitUnescaped(s, ',')
	if err != nil {
		return name, err
	}
	var attrs []pkix.AttributeTypeAndValue
	for _, rdn := range rdns {
		if parts, err := splitUnescaped(rdn, '+'); err != nil {
			return name, err
		} else if len(parts) > 1 {
			return name, fmt.Errorf("rootca: DN %q: multi-valued RDNs are not supported", s)
		}
		typ, val, ok := strings.Cut(rdn, "=")
		if !ok {
			return name, fmt.Errorf("rootca: DN %q: RDN %q lacks '='", s, rdn)
		}
		typ = strings.ToUpper(strings.TrimSpace(typ))
		oid, known := dnAttributeTypes[typ]
		if !known {
			return name, fmt.Errorf("rootca: DN %q: unknown attribute type %q", s, typ)
		}
		value, err := unescapeDNValue(strings.TrimSpace(val))
		if err != nil {
			return name, fmt.Errorf("rootca: DN %q: %w", s, err)
		}
		if value == "" {
			return name, fmt.Errorf("rootca: DN %q: empty %s value", s, typ)
		}
		if typ == "C" && len(value) != 2 {
			return name, fmt.Errorf("rootca: DN %q: country %q is not a two-letter code", s, value)
		}
		attrs = append(attrs, pkix.AttributeTypeAndValue{Type: oid, Value: value})
	}
	slices.Reverse(attrs)
	seq := make(pkix.RDNSequence, len(attrs))
	for i, a := range attrs {
		seq[i] = pkix.RelativeDistinguishedNameSET{a}
	}
	// The typed fields serve readers; ExtraNames fixes the encoding, since
	// pkix.Name skips a typed field whose type appears in ExtraNames.
	name.FillFromRDNSequence(&seq)
	name.ExtraNames = attrs
	return name, nil
}

// splitUnescaped splits s at every sep not preceded by a backslash escape.
func splitUnescaped(s string, sep byte) ([]string, error) {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
			if i == len(s) {
				return nil, fmt.Errorf("rootca: DN %q ends in a lone backslash", s)
			}
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:]), nil
}

func unescapeDNValue(v string) (string, error) {
	if !strings.Contains(v, `\`) {
		return checkDNValue(v)
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(v) {
			return "", fmt.Errorf("value ends in a lone backslash")
		}
		if strings.IndexByte(`,+"\<>;= #`, v[i]) >= 0 {
			b.WriteByte(v[i])
			continue
		}
		if i+1 < len(v) {
			if x, err := hex.DecodeString(v[i : i+2]); err == nil {
				b.WriteByte(x[0])
				i++
				continue
			}
		}
		return "", fmt.Errorf("bad escape \\%c", v[i])
	}
	return checkDNValue(b.String())
}

func checkDNValue(v string) (string, error) {
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("value is not valid UTF-8")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("value contains the control character %U", r)
		}
	}
	return v, nil
}
