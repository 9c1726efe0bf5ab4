package acme

import (
	"context"
	"fmt"

	"github.com/kvmpki/kvmpki/provider"
)

var _ provider.Renewer = (*Provider)(nil)

// Renew orders a successor for the names of req.Certificate, which must
// come from one of this provider's issuing CAs and not have been revoked
// through this provider. An ACME CA certifies a key only on a CSR signed with it
// (RFC 8555 section 7.4), and the provider does not hold the
// certificate's key: a renewal without a CSR is refused with
// provider.Unsupported. The CSR must name exactly the certificate's names.
func (p *Provider) Renew(ctx context.Context, req *provider.RenewRequest) (*provider.IssueResult, error) {
	if err := p.check(ctx); err != nil {
		return nil, err
	}
	if req == nil || req.Certificate == nil {
		return nil, &provider.RequestError{Field: "certificate", Reason: "the renew request names no certificate"}
	}
	old := req.Certificate
	if p.chainOf(old) == nil {
		return nil, &provider.RequestError{Field: "certificate", Reason: fmt.Sprintf("serial %s was issued by %q, none of the configured CA certificates", provider.FormatSerial(old.SerialNumber), old.Issuer)}
	}
	p.mu.Lock()
	reason, revoked := p.revoked[old.SerialNumber.Text(16)]
	p.mu.Unlock()
	if revoked {
		return nil, &provider.RevokedError{Serial: old.SerialNumber, Reason: reason}
	}
	if req.CSR == nil {
		return nil, provider.Unsupported("csr", "an ACME CA certifies a key only on a CSR signed with it, and the provider does not hold the certificate's key")
	}
	return p.Issue(ctx, &provider.IssueRequest{
		CSR:         req.CSR,
		DNSNames:    old.DNSNames,
		IPAddresses: old.IPAddresses,
		Validity:    req.Validity,
		MaxValidity: req.MaxValidity,
		Role:        provider.RoleOf(old),
	})
}
