package acme

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/kvmpki/kvmpki/provider"
)

// Revoke revokes a certificate this provider's CA issued. ACME revokes by
// certificate (RFC 8555 section 7.6), so a request without
// RevokeRequest.Certificate is refused with provider.Unsupported; a
// certificate of another CA yields provider.ErrNotFound. A second
// revocation through this provider yields provider.ErrAlreadyRevoked.
func (p *Provider) Revoke(ctx context.Context, req *provider.RevokeRequest) error {
	if err := p.check(ctx); err != nil {
		return err
	}
	if req == nil {
		return &provider.RequestError{Reason: "nil revoke request"}
	}
	if !req.Reason.Valid() {
		return &provider.RequestError{Field: "reason", Reason: fmt.Sprintf("%v is not a revocation reason", req.Reason)}
	}
	if req.Certificate == nil {
		if req.Serial == nil {
			return &provider.RequestError{Field: "serial", Reason: "the request names no certificate"}
		}
		return provider.Unsupported("certificate", "an ACME CA revokes by certificate (RFC 8555 section 7.6), not by serial alone")
	}
	serial, err := req.SerialNumber()
	if err != nil {
		return err
	}
	if p.chainOf(req.Certificate) == nil {
		return fmt.Errorf("acme: certificate serial %s was issued by %q, none of the configured CA certificates: %w", provider.FormatSerial(serial), req.Certificate.Issuer, provider.ErrNotFound)
	}
	key := serial.Text(16)
	p.mu.Lock()
	_, done := p.revoked[key]
	p.mu.Unlock()
	if done {
		return fmt.Errorf("acme: certificate serial %s: %w", provider.FormatSerial(serial), provider.ErrAlreadyRevoked)
	}
	if err := p.client.RevokeCert(ctx, nil, req.Certificate.Raw, acme.CRLReasonCode(req.Reason)); err != nil {
		return fmt.Errorf("acme: revoke serial %s: %w", provider.FormatSerial(serial), mapError(err))
	}
	p.mu.Lock()
	p.revoked[key] = req.Reason
	p.mu.Unlock()
	return nil
}

// VerifyPeer verifies a TLS peer's chain against the configured CA
// certificates, for the usage and name of req, and refuses a certificate
// this provider revoked. See the BUG note: ACME gives no revocation
// status, so a revocation made elsewhere is not seen.
func (p *Provider) VerifyPeer(ctx context.Context, req *provider.VerifyRequest) error {
	if err := p.check(ctx); err != nil {
		return err
	}
	if err := req.Check(); err != nil {
		return err
	}
	if len(req.Certificates) == 0 || req.Certificates[0] == nil {
		return &provider.VerifyError{Err: provider.ErrNoCertificate}
	}
	leaf := req.Certificates[0]
	inter := append(slices.Clone(req.Certificates[1:]), p.intermediates()...)
	if _, err := provider.VerifyChain(leaf, inter, p.roots, &provider.VerifyChainOptions{
		Usage: req.Usage, ServerName: req.ServerName, Time: req.Time,
	}); err != nil {
		return err
	}
	p.mu.Lock()
	reason, revoked := p.revoked[leaf.SerialNumber.Text(16)]
	p.mu.Unlock()
	if revoked && p.chainOf(leaf) != nil {
		return &provider.VerifyError{Subject: leaf.Subject.String(), Serial: leaf.SerialNumber,
			Err: &provider.RevokedError{Serial: leaf.SerialNumber, Reason: reason}}
	}
	return nil
}

// ACME problem types (RFC 8555 section 6.7) the provider maps onto the
// contract's errors.
const (
	problemPrefix = "urn:ietf:params:acme:error:"
)

// mapError maps an ACME error onto the contract: a rate limit or an
// unavailable CA matches provider.ErrRetryLater (with the CA's
// Retry-After), a refused request provider.ErrInvalidRequest, an
// unsupported identifier or revocation reason errors.ErrUnsupported as
// well, an already revoked certificate provider.ErrAlreadyRevoked and an
// unknown one provider.ErrNotFound. Anything else is returned as it is.
func mapError(err error) error {
	var e *acme.Error
	// acme.RateLimit looks at err itself, not at what it wraps.
	if errors.As(err, &e) {
		if d, ok := acme.RateLimit(e); ok {
			return &provider.RetryLaterError{After: retryAt(d), Err: err}
		}
	}
	var oe *acme.OrderError
	if errors.As(err, &oe) && oe.Problem != nil {
		return &provider.RequestError{Field: "names", Reason: "the CA refused the order", Err: mapError(oe.Problem)}
	}
	var ae *acme.AuthorizationError
	if errors.As(err, &ae) {
		return &provider.RequestError{Field: "names", Reason: fmt.Sprintf("the CA did not validate control of %s", ae.Identifier), Err: err}
	}
	if e == nil {
		return err
	}
	switch e.ProblemType {
	case problemPrefix + "rejectedIdentifier", problemPrefix + "caa", problemPrefix + "badCSR":
		return &provider.RequestError{Field: "names", Reason: "the CA refused the request", Err: err}
	case problemPrefix + "unsupportedIdentifier":
		return &provider.RequestError{Field: "names", Reason: "the CA does not certify this kind of name", Err: errors.Join(errors.ErrUnsupported, err)}
	case problemPrefix + "badRevocationReason":
		return &provider.RequestError{Field: "reason", Reason: "the CA does not accept this revocation reason", Err: errors.Join(errors.ErrUnsupported, err)}
	case problemPrefix + "alreadyRevoked":
		return fmt.Errorf("%w: %w", provider.ErrAlreadyRevoked, err)
	}
	if e.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %w", provider.ErrNotFound, err)
	}
	if e.StatusCode == http.StatusServiceUnavailable {
		return &provider.RetryLaterError{After: retryAfter(e.Header), Err: err}
	}
	return err
}

// retryAt returns the moment d from now, at most maxRetryAfter, or zero
// for d zero or negative (x/crypto/acme's own parsing of a huge
// Retry-After overflows into one).
func retryAt(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(min(d, maxRetryAfter))
}

// retryAfter reads a Retry-After header (seconds or an HTTP date).
func retryAfter(h http.Header) time.Time {
	v := h.Get("Retry-After")
	if v == "" {
		return time.Time{}
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		// Bounded before the multiplication, which would overflow.
		return retryAt(time.Duration(min(secs, int(maxRetryAfter/time.Second))) * time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		return t
	}
	return time.Time{}
}
