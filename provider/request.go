package provider

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// KeyAlgorithm names the kind of key a provider generates for a request
// without a CSR. It is the one key algorithm type of kvmpki (keystore
// uses the same), read from text by [ParseKeyAlgorithm].
type KeyAlgorithm = pkicore.KeyAlgorithm

const (
	// KeyAlgorithmDefault lets the provider choose.
	KeyAlgorithmDefault = pkicore.KeyAlgorithmDefault
	// KeyAlgorithmRSA is an RSA key; KeySize is the modulus size in bits.
	KeyAlgorithmRSA = pkicore.KeyAlgorithmRSA
	// KeyAlgorithmECDSA is an ECDSA key; KeySize is the curve size in bits
	// (256 for P-256, 384 for P-384).
	KeyAlgorithmECDSA = pkicore.KeyAlgorithmECDSA
)

// ParseKeyAlgorithm reads "rsa", "ecdsa" (or "ec") and "default" (or the
// empty string), in any case, as [KeyAlgorithm.String] writes them.
func ParseKeyAlgorithm(s string) (KeyAlgorithm, error) {
	a, err := pkicore.ParseKeyAlgorithm(s)
	if err != nil {
		return 0, fmt.Errorf("provider: %w", err)
	}
	return a, nil
}

// IssueRequest asks a provider for a certificate.
//
// With CSR set, the requester holds the private key and the provider signs
// the CSR's public key after checking the CSR's signature. With CSR nil, the
// provider generates the key pair and returns the private key in
// [IssueResult.PrivateKey], as CloudStack does for system VMs.
type IssueRequest struct {
	// CSR is a PKCS #10 certificate request, PEM ("CERTIFICATE REQUEST")
	// or DER. If nil, the provider generates a key.
	CSR []byte

	// KeyAlgorithm and KeySize choose the generated key when CSR is nil.
	// Zero values mean the provider's defaults.
	KeyAlgorithm KeyAlgorithm
	KeySize      int

	// CommonName is the subject common name. If empty, the provider
	// chooses one of the certificate's names (rootca: the CSR's common
	// name if the request vouches for it, else the first DNS name, else
	// the first IP address).
	CommonName string

	// DNSNames and IPAddresses are names the platform vouches for; they
	// are added to the names of the CSR, as CloudStack adds a host's
	// addresses on top of its agent's CSR.
	DNSNames    []string
	IPAddresses []net.IP

	// Validity is how long the certificate is valid, exactly, counted
	// from the moment of issue (a provider may backdate NotBefore a
	// little to absorb clock skew). Zero means the provider's default,
	// bounded by MaxValidity. A provider refuses, rather than shortens, a
	// validity that outlives its CA; a CA that decides the validity
	// itself (ACME) refuses any non-zero Validity with [Unsupported].
	Validity time.Duration

	// MaxValidity, if non-zero, is the longest validity the requester
	// accepts when Validity is zero: a provider that chooses the
	// validity issues at most this long (rootca: the shorter of its
	// default and MaxValidity), and a CA that decides the validity
	// itself issues when its own validity fits, refusing with
	// [Unsupported] otherwise. Zero means no bound. It is ignored when
	// Validity is set, and a negative value is refused.
	MaxValidity time.Duration

	// Role decides the key usages. It must be set.
	Role Role
}

// IssueResult is an issued certificate.
type IssueResult struct {
	// Certificate is the issued leaf certificate.
	Certificate *x509.Certificate
	// Chain holds the issuing CA certificates, from the issuer of
	// Certificate up to and including the root. A CA with several
	// issuing intermediates (Let's Encrypt) returns the path of this
	// certificate, which need not be the first of
	// [Provider.CACertificates]; every certificate of Chain is among
	// them.
	Chain []*x509.Certificate
	// PrivateKey is the generated key when the request had no CSR, and
	// nil otherwise.
	PrivateKey crypto.Signer
}

// RevokeRequest asks a provider to revoke a certificate, named by its
// serial number, by the certificate itself, or both.
type RevokeRequest struct {
	// Serial is the serial number of the certificate to revoke. It may be
	// nil when Certificate is set; [RevokeRequest.SerialNumber] then
	// derives it.
	Serial *big.Int
	// Certificate, if set, is the certificate to revoke. A CA that
	// revokes by certificate rather than by serial (ACME, RFC 8555
	// section 7.6) needs it; one that does not may refuse a request
	// without it with [Unsupported]. If Serial is set as well, both must
	// name the same certificate.
	Certificate *x509.Certificate
	// Reason is the RFC 5280 reason. The zero value is
	// ReasonUnspecified.
	Reason RevocationReason
}

// SerialNumber returns the serial of the certificate to revoke: Serial,
// or else the serial of Certificate. A request that names neither, or a
// Serial that is not Certificate's, yields a *[RequestError].
func (r *RevokeRequest) SerialNumber() (*big.Int, error) {
	switch {
	case r == nil:
		return nil, &RequestError{Reason: "nil request"}
	case r.Certificate != nil && r.Certificate.SerialNumber == nil:
		return nil, &RequestError{Field: "certificate", Reason: "has no serial number"}
	case r.Serial == nil && r.Certificate == nil:
		return nil, &RequestError{Field: "serial", Reason: "missing (set Serial or Certificate)"}
	case r.Serial == nil:
		return r.Certificate.SerialNumber, nil
	case r.Certificate != nil && r.Serial.Cmp(r.Certificate.SerialNumber) != 0:
		return nil, &RequestError{Field: "serial", Reason: fmt.Sprintf("%s is not the serial of the certificate (%s)", FormatSerial(r.Serial), FormatSerial(r.Certificate.SerialNumber))}
	}
	return r.Serial, nil
}

// RenewRequest asks a provider for a successor of an issued certificate,
// with the same names and role and a new validity period.
type RenewRequest struct {
	// Certificate is the certificate being renewed. It must have been
	// issued by the provider and not be revoked.
	Certificate *x509.Certificate
	// CSR, if set, carries a new key for the successor. If nil, the
	// successor certifies the same public key; a CA that certifies a
	// key only on a CSR signed with it (proof of possession: ACME, RFC
	// 8555 section 7.4) refuses a nil CSR with [Unsupported], and the
	// caller renews with a CSR instead.
	//
	// A certificate is public: before renewing with a CSR, the caller
	// must have authenticated the holder of Certificate's key (for
	// instance as the TLS peer that presented it), or anyone could move
	// another host's names onto a key of their own.
	CSR []byte
	// Validity and MaxValidity as in IssueRequest.
	Validity    time.Duration
	MaxValidity time.Duration
}

// VerifyRequest asks a provider to judge a peer's certificate at a TLS
// handshake.
type VerifyRequest struct {
	// Certificates are the peer's certificates as presented, leaf first.
	// Empty when the peer presented none.
	Certificates []*x509.Certificate
	// Usage is the use being made of the leaf: UsageClientAuth when a
	// server verifies a client, UsageServerAuth when a client verifies a
	// server. It must be set: the zero value is refused with an error
	// matching ErrInvalidRequest.
	Usage Usage
	// ServerName is the DNS name or IP address the leaf must be valid
	// for. It is required with UsageServerAuth (a request without it is
	// refused with an error matching ErrInvalidRequest, since it would
	// accept any host's server certificate) and ignored otherwise.
	ServerName string
	// Time is the verification time. Zero means now.
	Time time.Time
}

// CertificateStatus is the state of an issued certificate in a provider's
// inventory.
type CertificateStatus int

const (
	// StatusValid is an issued, unrevoked certificate. It may still have
	// expired; compare NotAfter.
	StatusValid CertificateStatus = iota
	// StatusRevoked is a revoked certificate.
	StatusRevoked
)

// String returns "valid" or "revoked".
func (s CertificateStatus) String() string {
	switch s {
	case StatusValid:
		return "valid"
	case StatusRevoked:
		return "revoked"
	}
	return fmt.Sprintf("CertificateStatus(%d)", int(s))
}

// CertificateRecord describes an issued certificate in a provider's
// inventory.
type CertificateRecord struct {
	Serial      *big.Int
	Subject     string // RFC 4514 string of the subject
	DNSNames    []string
	IPAddresses []net.IP
	NotBefore   time.Time
	NotAfter    time.Time
	Role        Role
	Status      CertificateStatus
	// RevokedAt and Reason are set when Status is StatusRevoked.
	RevokedAt time.Time
	Reason    RevocationReason
	// Raw is the DER certificate.
	Raw []byte
}

// ListOptions filters an inventory listing. The zero value lists every
// certificate.
type ListOptions struct {
	// Status, if non-nil, keeps only certificates in that state.
	Status *CertificateStatus
	// ExpiringBefore, if non-zero, keeps only certificates whose NotAfter
	// is before it: the candidates for renewal or an expiry alert.
	ExpiringBefore time.Time
}
