package provider

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// Provider is a certificate authority the platform issues certificates
// from. Implementations must be safe for concurrent use.
type Provider interface {
	// Name is the registry name, such as "root".
	Name() string
	// Description is a one-line human description.
	Description() string
	// CACertificates returns the certificates peers must trust: the
	// issuing CA first, then its issuers up to the root. During a CA
	// rollover further self-signed roots follow.
	CACertificates(ctx context.Context) ([]*x509.Certificate, error)
	// Issue issues a certificate. A request the provider refuses yields
	// an error matching ErrInvalidRequest and changes no state.
	Issue(ctx context.Context, req *IssueRequest) (*IssueResult, error)
	// Revoke revokes an issued certificate. An unknown serial yields
	// ErrNotFound; revoking twice yields ErrAlreadyRevoked; a missing
	// serial or a reason that is not a revocation reason (7,
	// removeFromCRL) yields ErrInvalidRequest.
	Revoke(ctx context.Context, req *RevokeRequest) error
}

// CRLSigner is a provider that publishes a certificate revocation list.
type CRLSigner interface {
	// SignCRL signs a new RFC 5280 v2 CRL, with a CRL number greater than
	// that of every CRL signed before.
	SignCRL(ctx context.Context) (*x509.RevocationList, error)
}

// PeerVerifier is a provider that judges peer certificates at TLS
// handshakes: chain to the CA, validity, revocation and key usage.
type PeerVerifier interface {
	// VerifyPeer returns nil if the peer is accepted, and otherwise a
	// *VerifyError whose reason matches one of the package sentinels; for
	// a revoked certificate the reason is a *RevokedError.
	VerifyPeer(ctx context.Context, req *VerifyRequest) error
}

// Renewer is a provider that can issue a successor to a certificate.
type Renewer interface {
	// Renew issues a successor with the same names and role. A
	// certificate the provider did not issue, or a bad CSR or validity,
	// yields an error matching ErrInvalidRequest; a revoked certificate
	// one matching ErrRevoked.
	Renew(ctx context.Context, req *RenewRequest) (*IssueResult, error)
}

// Inventory is a provider that records the certificates it issued.
type Inventory interface {
	// LookupCertificate returns the record of the certificate with the
	// given serial, or an error matching ErrNotFound.
	LookupCertificate(ctx context.Context, serial *big.Int) (*CertificateRecord, error)
	// ListCertificates returns the records that match opts, in
	// increasing order of NotAfter.
	ListCertificates(ctx context.Context, opts *ListOptions) ([]*CertificateRecord, error)
}

func unsupported(p Provider, capability string) error {
	return fmt.Errorf("provider: %s does not support %s: %w", p.Name(), capability, errors.ErrUnsupported)
}

// SignCRL signs a CRL with p if p is a [CRLSigner].
func SignCRL(ctx context.Context, p Provider) (*x509.RevocationList, error) {
	s, ok := p.(CRLSigner)
	if !ok {
		return nil, unsupported(p, "CRL signing")
	}
	return s.SignCRL(ctx)
}

// VerifyPeer verifies a peer with p if p is a [PeerVerifier].
func VerifyPeer(ctx context.Context, p Provider, req *VerifyRequest) error {
	v, ok := p.(PeerVerifier)
	if !ok {
		return unsupported(p, "peer verification")
	}
	return v.VerifyPeer(ctx, req)
}

// Renew renews a certificate with p if p is a [Renewer].
func Renew(ctx context.Context, p Provider, req *RenewRequest) (*IssueResult, error) {
	r, ok := p.(Renewer)
	if !ok {
		return nil, unsupported(p, "renewal")
	}
	return r.Renew(ctx, req)
}

// LookupCertificate looks a serial up in p's inventory if p is an
// [Inventory].
func LookupCertificate(ctx context.Context, p Provider, serial *big.Int) (*CertificateRecord, error) {
	i, ok := p.(Inventory)
	if !ok {
		return nil, unsupported(p, "an inventory")
	}
	return i.LookupCertificate(ctx, serial)
}

// ListCertificates lists p's inventory if p is an [Inventory].
func ListCertificates(ctx context.Context, p Provider, opts *ListOptions) ([]*CertificateRecord, error) {
	i, ok := p.(Inventory)
	if !ok {
		return nil, unsupported(p, "an inventory")
	}
	return i.ListCertificates(ctx, opts)
}

// CABundle returns p's CA certificates as concatenated PEM blocks, as
// CloudStack's listCaCertificate API returns them and as libvirt's
// cacert.pem and QEMU's ca-cert.pem hold them.
func CABundle(ctx context.Context, p Provider) ([]byte, error) {
	certs, err := p.CACertificates(ctx)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("provider: %s returned no CA certificates", p.Name())
	}
	return EncodeCertificates(certs...), nil
}

// EncodeCertificates returns certs as concatenated PEM "CERTIFICATE"
// blocks.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		if c == nil {
			continue
		}
		// Encoding into a bytes.Buffer cannot fail.
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}
