package provider

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"strings"
)

// CSRPolicy is the policy [CheckCSR] and [CheckIssueRequest] apply, the
// rules every provider would otherwise write again. The zero value, like
// a nil *CSRPolicy, is the strict default; a field can only loosen or
// tighten a limit, never turn a check off.
type CSRPolicy struct {
	// MinRSAKeySize is the smallest RSA modulus, in bits, accepted in a
	// CSR. If zero, 2048.
	MinRSAKeySize int
	// MaxRSAKeySize is the largest RSA modulus accepted: verifying a
	// huge key is a cheap way to burn a CA's CPU. If zero, 8192.
	MaxRSAKeySize int
	// MaxNames bounds the DNS names and IP addresses of a CSR, and those
	// of a request, each counted on its own. If zero, 100.
	MaxNames int
}

func (p *CSRPolicy) minRSA() int {
	if p == nil || p.MinRSAKeySize == 0 {
		return defaultMinRSAKeySize
	}
	return p.MinRSAKeySize
}

func (p *CSRPolicy) maxRSA() int {
	if p == nil || p.MaxRSAKeySize == 0 {
		return defaultMaxRSAKeySize
	}
	return p.MaxRSAKeySize
}

func (p *CSRPolicy) maxNames() int {
	if p == nil || p.MaxNames <= 0 {
		return defaultMaxNames
	}
	return p.MaxNames
}

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// CheckCSR parses a PKCS #10 certificate request as [ParseCSR] does and
// applies the policy every CA needs, refusing with a *[RequestError] (which
// matches [ErrInvalidRequest]):
//
//   - a signature algorithm that is not SHA-256 or stronger with RSA,
//     RSA-PSS or ECDSA ([CheckSignatureAlgorithm]): SHA-1 and MD5 are
//     refused, which x509.CertificateRequest.CheckSignature alone would
//     accept;
//   - a key that [CheckPublicKey] refuses;
//   - a signature that does not verify;
//   - a basic constraints extension asking for CA:TRUE, or a malformed
//     one;
//   - e-mail or URI names;
//   - more than policy.MaxNames DNS names and IP addresses;
//   - a DNS name that [CheckDNSName] refuses (an IP literal among them),
//     an IP address that [CheckIPAddress] refuses, or a common name that
//     is neither (or longer than 64 characters).
//
// It does not decide which names go into the certificate: that is the
// provider's policy (rootca keeps only the names the request vouches
// for). policy may be nil.
func CheckCSR(data []byte, policy *CSRPolicy) (*x509.CertificateRequest, error) {
	csr, err := ParseCSR(data)
	if err != nil {
		return nil, err
	}
	if err := CheckSignatureAlgorithm(csr.SignatureAlgorithm); err != nil {
		return nil, &RequestError{Field: "csr", Reason: err.Error()}
	}
	if err := CheckPublicKey(csr.PublicKey, policy); err != nil {
		return nil, &RequestError{Field: "csr", Reason: err.Error()}
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, &RequestError{Field: "csr", Reason: "signature does not verify", Err: err}
	}
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidBasicConstraints) {
			continue
		}
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		if rest, err := asn1.Unmarshal(ext.Value, &bc); err != nil || len(rest) != 0 {
			return nil, &RequestError{Field: "csr", Reason: "malformed basic constraints extension"}
		}
		if bc.IsCA {
			return nil, &RequestError{Field: "csr", Reason: "requests a CA certificate (basic constraints CA:TRUE)"}
		}
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return nil, &RequestError{Field: "csr", Reason: "requests e-mail or URI names, which this CA does not certify"}
	}
	if n, max := len(csr.DNSNames)+len(csr.IPAddresses), policy.maxNames(); n > max {
		return nil, &RequestError{Field: "csr", Reason: fmt.Sprintf("%d names exceed the limit of %d", n, max)}
	}
	if cn := csr.Subject.CommonName; cn != "" {
		if err := checkCommonName("csr common name", cn); err != nil {
			return nil, err
		}
	}
	for _, n := range csr.DNSNames {
		if _, err := CheckDNSName(n); err != nil {
			return nil, &RequestError{Field: "csr dns", Reason: err.Error()}
		}
	}
	for _, ip := range csr.IPAddresses {
		if err := CheckIPAddress(ip); err != nil {
			return nil, &RequestError{Field: "csr ip", Reason: err.Error()}
		}
	}
	return csr, nil
}

// CheckIssueRequest applies the request half of the policy, refusing with
// a *[RequestError]: a nil request, a [Role] that is not host, client or
// server, a negative validity, more than policy.MaxNames DNS names and IP
// addresses, a DNS name that [CheckDNSName] refuses (so an IP literal such
// as "10.0.0.9" in DNSNames is refused: put it in IPAddresses), an IP
// address that [CheckIPAddress] refuses, and a common name that is neither
// a DNS name nor an IP literal or is longer than 64 characters. It does
// not look at the CSR: use [CheckCSR]. policy may be nil.
func CheckIssueRequest(req *IssueRequest, policy *CSRPolicy) error {
	if req == nil {
		return &RequestError{Reason: "nil request"}
	}
	if !req.Role.Valid() {
		return &RequestError{Field: "role", Reason: fmt.Sprintf("%v is not host, client or server", req.Role)}
	}
	if req.Validity < 0 {
		return &RequestError{Field: "validity", Reason: "negative"}
	}
	if req.MaxValidity < 0 {
		return &RequestError{Field: "max validity", Reason: "negative"}
	}
	if req.CommonName != "" {
		if err := checkCommonName("common name", req.CommonName); err != nil {
			return err
		}
	}
	// Refuse absurd lists before looking at each entry.
	if n, max := len(req.DNSNames)+len(req.IPAddresses), policy.maxNames(); n > max {
		return &RequestError{Field: "names", Reason: fmt.Sprintf("%d names exceed the limit of %d", n, max)}
	}
	for _, n := range req.DNSNames {
		if _, err := CheckDNSName(n); err != nil {
			return &RequestError{Field: "dns", Reason: err.Error()}
		}
	}
	for _, ip := range req.IPAddresses {
		if err := CheckIPAddress(ip); err != nil {
			return &RequestError{Field: "ip", Reason: err.Error()}
		}
	}
	return nil
}

// checkCommonName checks a common name: at most 64 characters (RFC 5280
// ub-common-name), and a DNS name or an IP literal.
func checkCommonName(field, cn string) error {
	if len(cn) > maxCommonNameLength {
		return &RequestError{Field: field, Reason: fmt.Sprintf("longer than %d characters", maxCommonNameLength)}
	}
	if ip := net.ParseIP(cn); ip != nil {
		if err := CheckIPAddress(ip); err != nil {
			return &RequestError{Field: field, Reason: err.Error()}
		}
		return nil
	}
	if _, err := CheckDNSName(cn); err != nil {
		return &RequestError{Field: field, Reason: err.Error()}
	}
	return nil
}

// CheckDNSName checks that name is a host name of letters, digits and
// hyphens (RFC 1123), at most 253 characters in labels of at most 63,
// without wildcards or a trailing dot, and returns it in lower case.
//
// A name whose last label is all digits is refused: it is an IP literal
// ("10.0.0.9") or what resolvers read as one ("10.9", "167772169"). Go
// and GnuTLS disagree on whether such a DNS name matches the address, so
// an address belongs in the IP addresses of a certificate, never in its
// DNS names.
func CheckDNSName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty DNS name")
	}
	if len(name) > maxDNSNameLength {
		return "", fmt.Errorf("DNS name of %d characters is longer than %d", len(name), maxDNSNameLength)
	}
	labelLen, numeric := 0, true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if labelLen == 0 {
				return "", fmt.Errorf("DNS name %q has an empty label", name)
			}
			labelLen, numeric = 0, true
			continue
		case c == '-':
			if labelLen == 0 || i+1 == len(name) || name[i+1] == '.' {
				return "", fmt.Errorf("DNS name %q has a label that starts or ends with a hyphen", name)
			}
			numeric = false
		case '0' <= c && c <= '9':
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
			numeric = false
		default:
			return "", fmt.Errorf("DNS name %q contains the character %q", name, c)
		}
		labelLen++
		if labelLen > 63 {
			return "", fmt.Errorf("DNS name %q has a label longer than 63 characters", name)
		}
	}
	if labelLen == 0 {
		return "", fmt.Errorf("DNS name %q ends with a dot", name)
	}
	if numeric {
		if net.ParseIP(name) != nil {
			return "", fmt.Errorf("DNS name %q is an IP address: request it as an IP address", name)
		}
		return "", fmt.Errorf("DNS name %q ends with a numeric label, which resolvers read as an IPv4 address", name)
	}
	return strings.ToLower(name), nil
}

// CheckIPAddress checks that ip is a well-formed IPv4 or IPv6 address that
// may name a host: not unspecified, multicast or the broadcast address.
func CheckIPAddress(ip net.IP) error {
	switch {
	case len(ip) != net.IPv4len && len(ip) != net.IPv6len:
		return fmt.Errorf("malformed IP address of %d bytes", len(ip))
	case ip.IsUnspecified():
		return fmt.Errorf("unspecified IP address %s", ip)
	case ip.IsMulticast():
		return fmt.Errorf("multicast IP address %s", ip)
	case ip.Equal(net.IPv4bcast):
		return fmt.Errorf("broadcast IP address %s", ip)
	}
	return nil
}

// CheckSignatureAlgorithm accepts the signature algorithms a CA may sign
// with or accept on a CSR: RSA PKCS #1 v1.5 and RSA-PSS with SHA-256,
// SHA-384 or SHA-512, and ECDSA with the same. SHA-1 and MD5 are refused
// everywhere: Go and GnuTLS reject chains that use them.
func CheckSignatureAlgorithm(alg x509.SignatureAlgorithm) error {
	switch alg {
	case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS,
		x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
		return nil
	}
	return fmt.Errorf("signature algorithm %v is not allowed", alg)
}

// CheckPublicKey enforces the key policy on a key to be certified: RSA of
// policy.MinRSAKeySize to MaxRSAKeySize bits with an odd exponent of at
// least 65537, or ECDSA on P-256, P-384 or P-521. Everything else is
// refused. policy may be nil.
func CheckPublicKey(pub crypto.PublicKey, policy *CSRPolicy) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if min := policy.minRSA(); bits < min {
			return fmt.Errorf("RSA key of %d bits is too weak (minimum %d)", bits, min)
		}
		if max := policy.maxRSA(); bits > max {
			return fmt.Errorf("RSA key of %d bits is too large (maximum %d)", bits, max)
		}
		if k.E < 65537 || k.E%2 == 0 {
			return fmt.Errorf("RSA public exponent %d is not allowed (want an odd value of at least 65537)", k.E)
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve == nil {
			return errors.New("ECDSA key without a curve")
		}
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("ECDSA curve %s is not allowed", k.Curve.Params().Name)
	case nil:
		return errors.New("no public key")
	}
	return fmt.Errorf("public key type %T is not allowed (want RSA or ECDSA)", pub)
}
