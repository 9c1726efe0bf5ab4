package ca

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// verifyTimeout bounds one verification at a handshake, since crypto/tls
// gives its hooks no context.
const verifyTimeout = 10 * time.Second

// verifyCerts judges a peer's certificates for usage (and serverName for
// a server) at time at, with the provider's own verifier when it has one
// (chain to its CA, key usage, validity, revocation: an in-memory lookup
// for rootca), and otherwise with the CA certificates and the current
// CRL's index. A provider with neither a verifier nor CRLs cannot tell a
// revoked peer: every peer is refused, with an error matching
// errors.ErrUnsupported.
func (h *handle) verifyCerts(ctx context.Context, certs []*x509.Certificate, usage provider.Usage, serverName string, at time.Time) error {
	if len(certs) == 0 || certs[0] == nil {
		return &provider.VerifyError{Err: ErrNoCertificate}
	}
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	if _, ok := h.p.(provider.PeerVerifier); ok {
		return provider.VerifyPeer(ctx, h.p, &provider.VerifyRequest{Certificates: certs, Usage: usage, ServerName: serverName, Time: at})
	}
	st, err := h.caCerts(ctx, false)
	if err != nil {
		return err
	}
	leaf := certs[0]
	if _, err := provider.VerifyChain(leaf, certs[1:], st.pool, &provider.VerifyChainOptions{Usage: usage, ServerName: serverName, Time: at}); err != nil {
		return err
	}
	crl, err := h.publisher().current(ctx)
	if err != nil {
		return fmt.Errorf("ca: cannot check revocation of %q: %w", leaf.Subject.String(), err)
	}
	if e, ok := crl.lookup(leaf.SerialNumber); ok && !e.RevocationTime.After(at) {
		return &provider.VerifyError{Subject: leaf.Subject.String(), Serial: leaf.SerialNumber,
			Err: &provider.RevokedError{Serial: leaf.SerialNumber, Reason: provider.RevocationReason(e.ReasonCode), RevokedAt: e.RevocationTime}}
	}
	return nil
}

// VerifyClientCertificate judges a TLS client's chain (leaf first) as
// the agent port judges an agent's, for the platform's other endpoints
// that take client certificates (an API that admits administrators by
// certificate): it chains to the provider's CA, has the client role, is
// valid now and is not revoked. Call it from tls.Config.VerifyConnection,
// which runs on resumed sessions too. Errors match ErrNoCertificate,
// ErrExpired, ErrUnknownAuthority, ErrIncompatibleUsage or ErrRevoked;
// what the certificate may do beyond that (an administrator's role) is
// the caller's to check.
func (m *Manager) VerifyClientCertificate(ctx context.Context, chain []*x509.Certificate) error {
	h, err := m.acquire()
	if err != nil {
		return err
	}
	defer m.release(h)
	return h.verifyCerts(ctx, chain, provider.UsageClientAuth, "", m.s.now())
}

// outsideValidity reports whether c is expired or not yet valid at t.
func outsideValidity(c *x509.Certificate, t time.Time) bool {
	return t.Before(c.NotBefore) || t.After(c.NotAfter)
}

// clampInto returns t moved inside c's validity.
func clampInto(c *x509.Certificate, t time.Time) time.Time {
	if t.Before(c.NotBefore) {
		return c.NotBefore
	}
	if t.After(c.NotAfter) {
		return c.NotAfter
	}
	return t
}

// hasMarker reports whether c carries the management marker name.
func (s *settings) hasMarker(c *x509.Certificate) bool {
	for _, n := range c.DNSNames {
		if strings.EqualFold(n, s.managementSAN) {
			return true
		}
	}
	return false
}

var errNotManagement = fmt.Errorf("%w: the peer's certificate does not carry it", ErrManagementName)
