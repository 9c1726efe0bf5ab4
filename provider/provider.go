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
//
// Errors follow one convention: a request the provider refuses matches
// [ErrInvalidRequest] (a *[RequestError]); a field or value the provider
// does not support matches [errors.ErrUnsupported] as well ([Unsupported]);
// a CA that is rate-limiting or not ready matches [ErrRetryLater] (a
// *[RetryLaterError]); anything else (a network or store failure) is
// returned wrapped, matching none of them.
type Provider interface {
	// Name is the registry name, such as "root".
	Name() string
	// Description is a one-line human description.
	Description() string
	// CACertificates returns the certificates peers must trust: the
	// issuing CA first, then its issuers up to the root. During a CA
	// rollover further self-signed roots follow. A CA that issues from
	// several intermediates (Let's Encrypt) lists all of them, each
	// before the root it chains to; every [IssueResult.Chain] is a path
	// through these certificates.
	CACertificates(ctx context.Context) ([]*x509.Certificate, error)
	// Issue issues a certificate. A request the provider refuses yields
	// an error matching ErrInvalidRequest and changes no state.
	Issue(ctx context.Context, req *IssueRequest) (*IssueResult, error)
	// Revoke revokes an issued certificate, named by serial or by
	// certificate ([RevokeRequest.SerialNumber]). An unknown serial
	// yields ErrNotFound; revoking twice yields ErrAlreadyRevoked; a
	// request naming no certificate or a reason that is not a revocation
	// reason (7, removeFromCRL) yields ErrInvalidRequest.
	Revoke(ctx context.Context, req *RevokeRequest) error
	// Close releases what the provider holds (connections, background
	// work, key handles). Calling it again does nothing and returns the
	// first call's result. The provider must not be used after Close.
	Close() error
}

// CRLSigner is a provider that holds its CA key and signs certificate
// revocation lists on demand (rootca). A provider whose CA publishes CRLs
// itself implements [CRLSource] instead. Callers that just need the
// current CRLs use [CRLs], which takes either.
type CRLSigner interface {
	// SignCRL signs a new RFC 5280 v2 CRL, with a CRL number greater than
	// that of every CRL signed before.
	SignCRL(ctx context.Context) (*x509.RevocationList, error)
}

// CRLSource is a provider whose CRLs are fetched, not signed: the CA (an
// ACME CA, Vault) publishes them and the provider downloads the latest.
type CRLSource interface {
	// CRLs returns the latest CRLs of each CA certificate that issues
	// the provider's certificates, checked against its issuer. A CA
	// may partition its CRL into shards (Let's Encrypt), so one issuer
	// may have several CRLs, each with its own IssuingDistributionPoint;
	// callers take a certificate's status from all of its issuer's CRLs.
	// A CA that has not published one yet yields an error matching
	// ErrRetryLater.
	CRLs(ctx context.Context) ([]*x509.RevocationList, error)
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
	// one matching ErrRevoked. A provider that needs proof of possession
	// of the key refuses a request without a CSR with [Unsupported].
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

func lacks(p Provider, capability string) error {
	return fmt.Errorf("provider: %s does not support %s: %w", p.Name(), capability, errors.ErrUnsupported)
}

// CRLs returns p's current CRLs: those of a [CRLSource], else one freshly
// signed by a [CRLSigner], else an error matching errors.ErrUnsupported.
// Use it to publish or load CRLs (libvirt's cacrl.pem, a CRL endpoint);
// use [SignCRL] only where a new CRL number is the point.
func CRLs(ctx context.Context, p Provider) ([]*x509.RevocationList, error) {
	if src, ok := p.(CRLSource); ok {
		return src.CRLs(ctx)
	}
	if s, ok := p.(CRLSigner); ok {
		crl, err := s.SignCRL(ctx)
		if err != nil {
			return nil, err
		}
		return []*x509.RevocationList{crl}, nil
	}
	return nil, lacks(p, "CRLs")
}

// SignCRL signs a CRL with p if p is a [CRLSigner].
func SignCRL(ctx context.Context, p Provider) (*x509.RevocationList, error) {
	s, ok := p.(CRLSigner)
	if !ok {
		return nil, lacks(p, "CRL signing")
	}
	return s.SignCRL(ctx)
}

// VerifyPeer verifies a peer with p if p is a [PeerVerifier].
func VerifyPeer(ctx context.Context, p Provider, req *VerifyRequest) error {
	v, ok := p.(PeerVerifier)
	if !ok {
		return lacks(p, "peer verification")
	}
	return v.VerifyPeer(ctx, req)
}

// Renew renews a certificate with p if p is a [Renewer].
func Renew(ctx context.Context, p Provider, req *RenewRequest) (*IssueResult, error) {
	r, ok := p.(Renewer)
	if !ok {
		return nil, lacks(p, "renewal")
	}
	return r.Renew(ctx, req)
}

// LookupCertificate looks a serial up in p's inventory if p is an
// [Inventory].
func LookupCertificate(ctx context.Context, p Provider, serial *big.Int) (*CertificateRecord, error) {
	i, ok := p.(Inventory)
	if !ok {
		return nil, lacks(p, "an inventory")
	}
	return i.LookupCertificate(ctx, serial)
}

// ListCertificates lists p's inventory if p is an [Inventory].
func ListCertificates(ctx context.Context, p Provider, opts *ListOptions) ([]*CertificateRecord, error) {
	i, ok := p.(Inventory)
	if !ok {
		return nil, lacks(p, "an inventory")
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
