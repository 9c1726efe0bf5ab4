package provider

import (
	"crypto/x509"
	"fmt"
)

// Usage is the use a TLS peer makes of its certificate, the extended key
// usage a verifier demands of it. The zero value, UsageUnspecified, is
// not a usage: a [VerifyRequest] carrying it is refused, so that no
// caller verifies for "any usage" (x509.ExtKeyUsageAny, which is also 0)
// by leaving the field out.
type Usage int

const (
	// UsageUnspecified is the zero Usage, refused by every verifier.
	UsageUnspecified Usage = iota
	// UsageClientAuth is a TLS client presenting its certificate to a
	// server (x509.ExtKeyUsageClientAuth).
	UsageClientAuth
	// UsageServerAuth is a TLS server presenting its certificate to a
	// client (x509.ExtKeyUsageServerAuth).
	UsageServerAuth
)

// String returns "clientAuth" or "serverAuth", the RFC 5280 names.
func (u Usage) String() string {
	switch u {
	case UsageClientAuth:
		return "clientAuth"
	case UsageServerAuth:
		return "serverAuth"
	case UsageUnspecified:
		return "unspecified"
	}
	return fmt.Sprintf("Usage(%d)", int(u))
}

// Valid reports whether u is UsageClientAuth or UsageServerAuth.
func (u Usage) Valid() bool { return u == UsageClientAuth || u == UsageServerAuth }

// ExtKeyUsage returns the extended key usage of u, and false for a usage
// that is not [Usage.Valid].
func (u Usage) ExtKeyUsage() (x509.ExtKeyUsage, bool) {
	switch u {
	case UsageClientAuth:
		return x509.ExtKeyUsageClientAuth, true
	case UsageServerAuth:
		return x509.ExtKeyUsageServerAuth, true
	}
	return 0, false
}
