package provider

import "context"

// RevocationNotifier is a provider that tells when it learns of
// revocations: its own Revoke, and revocations other processes made
// through a store or CA the provider shares (other management servers).
// A platform that caches revocation state (a CRL it serves, signed OCSP
// answers) subscribes to refresh that state at once instead of at its
// next periodic refresh.
//
// The contract, for implementers and callers alike:
//
//   - A notice is a hint, at most: it names no certificate and carries no
//     order. The receiver re-reads what it needs ([CRLs],
//     [LookupCertificate]); by the time it does, the provider must show
//     the revocations that caused the notice (notify after they are
//     visible, never before).
//   - Notices coalesce: the channel has a buffer of one and the provider
//     never blocks sending on it (a send to a full channel is dropped),
//     so several revocations may give a single notice, and a slow
//     receiver costs the provider nothing.
//   - A notice may be spurious, and a provider may miss none it knows
//     of, but it cannot report what it has not learnt: a receiver still
//     refreshes periodically.
//   - The channel is closed, and the subscription released, when ctx is
//     done or the provider is closed; a subscription holds no goroutine
//     of its own.
type RevocationNotifier interface {
	// NotifyRevocations subscribes to revocation notices until ctx is
	// done.
	NotifyRevocations(ctx context.Context) <-chan struct{}
}

// NotifyRevocations subscribes to p's revocation notices until ctx is
// done if p is a [RevocationNotifier], and otherwise returns an error
// matching errors.ErrUnsupported (the caller then refreshes on its own
// schedule). See RevocationNotifier for the contract.
func NotifyRevocations(ctx context.Context, p Provider) (<-chan struct{}, error) {
	n, ok := p.(RevocationNotifier)
	if !ok {
		return nil, lacks(p, "revocation notices")
	}
	return n.NotifyRevocations(ctx), nil
}
