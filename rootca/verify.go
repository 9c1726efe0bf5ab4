package rootca

import (
	"context"

	"github.com/kvmpki/kvmpki/provider"
)

// VerifyPeer judges a peer certificate at a TLS handshake:
//
//  1. The request must name a usage, and a server name with
//     provider.UsageServerAuth (provider.VerifyRequest.Check): otherwise
//     a *provider.RequestError.
//  2. A peer without a certificate is refused (provider.ErrNoCertificate),
//     unless Options.InsecureAllowMissingClientCert and Usage is client
//     authentication.
//  3. The leaf must be signed by this CA's issuing certificate, or during
//     a rotation by the previous CA's until it is retired
//     (provider.ErrUnknownAuthority), not merely chain to the same root,
//     with the extended key usage asked for (provider.ErrIncompatibleUsage),
//     and for ServerName when verifying a server (provider.ErrNameMismatch).
//     CloudStack never checked the chain.
//  4. Every certificate must be within its validity (provider.ErrExpired),
//     unless Options.InsecureAllowExpired.
//  5. The leaf must not be revoked (provider.ErrRevoked): a lookup in
//     memory, with no I/O.
//
// Steps 3 and 4 are provider.VerifyChain. A refusal is a
// *provider.VerifyError naming the certificate and the reason.
func (ca *CA) VerifyPeer(ctx context.Context, req *provider.VerifyRequest) error {
	if err := req.Check(); err != nil {
		return err
	}
	if len(req.Certificates) == 0 || req.Certificates[0] == nil {
		if ca.opts.InsecureAllowMissingClientCert && req.Usage == provider.UsageClientAuth {
			return nil
		}
		return &provider.VerifyError{Err: provider.ErrNoCertificate}
	}
	leaf := req.Certificates[0]
	now := req.Time
	if now.IsZero() {
		now = ca.opts.now()
	}
	// The issuing certificates (during a rotation, the successor's and
	// the previous CA's) are the only anchors, and intermediates the
	// peer sends are ignored: a leaf of another CA under the same root
	// (whose revocations this CA does not know) must not pass.
	if _, err := provider.VerifyChain(leaf, nil, ca.auth.Load().anchors, &provider.VerifyChainOptions{
		Usage:                req.Usage,
		ServerName:           req.ServerName,
		Time:                 now,
		InsecureAllowExpired: ca.opts.InsecureAllowExpired,
	}); err != nil {
		return err
	}
	if r, revoked := ca.revoked.lookup(leaf.SerialNumber); revoked {
		return &provider.VerifyError{Subject: leaf.Subject.String(), Serial: leaf.SerialNumber,
			Err: &provider.RevokedError{Serial: r.Serial, Reason: r.Reason, RevokedAt: r.RevokedAt}}
	}
	return nil
}
