package rootca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// VerifyPeer judges a peer certificate at a TLS handshake:
//
//  1. A peer without a certificate is refused (provider.ErrNoCertificate),
//     unless Options.InsecureAllowMissingClientCert and Usage is client
//     authentication.
//  2. The leaf must be signed by this CA's issuing certificate
//     (provider.ErrUnknownAuthority), not merely chain to the same root,
//     with the extended key usage asked for (provider.ErrIncompatibleUsage),
//     and for ServerName if set (provider.ErrNameMismatch). CloudStack never
//     checked the chain.
//  3. Every certificate must be within its validity (provider.ErrExpired),
//     unless Options.InsecureAllowExpired.
//  4. The leaf must not be revoked (provider.ErrRevoked): a lookup in
//     memory, with no I/O.
//
// A refusal is a *provider.VerifyError naming the certificate and the
// reason.
func (ca *CA) VerifyPeer(ctx context.Context, req *provider.VerifyRequest) error {
	if req == nil || len(req.Certificates) == 0 || req.Certificates[0] == nil {
		usage := x509.ExtKeyUsageClientAuth
		if req != nil && req.Usage != 0 {
			usage = req.Usage
		}
		if ca.opts.InsecureAllowMissingClientCert && usage == x509.ExtKeyUsageClientAuth {
			return nil
		}
		return &provider.VerifyError{Err: provider.ErrNoCertificate}
	}
	leaf := req.Certificates[0]
	fail := func(err error) error {
		return &provider.VerifyError{Subject: leaf.Subject.String(), Serial: leaf.SerialNumber, Err: err}
	}
	usage := req.Usage
	if usage == 0 {
		usage = x509.ExtKeyUsageClientAuth
	}
	now := req.Time
	if now.IsZero() {
		now = ca.opts.now()
	}
	if leaf.IsCA {
		// GnuTLS refuses CA:TRUE peers too; a peer showing a CA
		// certificate is either misconfigured or holds a CA key.
		return fail(fmt.Errorf("%w: a CA certificate cannot be a TLS peer", provider.ErrIncompatibleUsage))
	}
	opts := x509.VerifyOptions{
		// The issuing certificate is the only anchor, and intermediates
		// the peer sends are ignored: a leaf of another CA under the
		// same root (whose revocations this CA does not know) must not
		// pass.
		Roots:       ca.issuer,
		KeyUsages:   []x509.ExtKeyUsage{usage},
		CurrentTime: now,
		DNSName:     req.ServerName,
	}
	if ca.opts.InsecureAllowExpired {
		// Verify at a moment inside the leaf's validity; the CA chain
		// must still be valid then.
		opts.CurrentTime = clampTime(now, leaf.NotBefore, leaf.NotAfter)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return fail(classify(err))
	}
	if r, revoked := ca.revoked.lookup(leaf.SerialNumber); revoked {
		return fail(&provider.RevokedError{Serial: r.Serial, Reason: r.Reason, RevokedAt: r.RevokedAt})
	}
	return nil
}

func clampTime(t, lo, hi time.Time) time.Time {
	if t.Before(lo) {
		return lo
	}
	if t.After(hi) {
		return hi
	}
	return t
}

// classify maps crypto/x509 verification errors onto the provider
// sentinels, keeping the original for its detail.
func classify(err error) error {
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("%w: %w", provider.ErrExpired, err)
	case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
		return fmt.Errorf("%w: %w", provider.ErrIncompatibleUsage, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w: %w", provider.ErrNameMismatch, err)
	case errors.As(err, &unknown):
		return fmt.Errorf("%w: %w", provider.ErrUnknownAuthority, err)
	}
	// Anything else (a CA that may not sign, a broken signature) means
	// the chain does not lead to this CA.
	return fmt.Errorf("%w: %w", provider.ErrUnknownAuthority, err)
}
