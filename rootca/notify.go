package rootca

import (
	"context"
	"sync"
)

// notifier hands out revocation notices (provider.RevocationNotifier).
// Its zero value is ready; fire never blocks.
type notifier struct {
	mu     sync.Mutex
	subs   map[chan struct{}]struct{}
	closed bool // the CA is closed: subscriptions are closed at once
}

func (n *notifier) subscribe(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	if ctx.Err() != nil {
		close(ch)
		return ch
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		close(ch)
		return ch
	}
	if n.subs == nil {
		n.subs = make(map[chan struct{}]struct{})
	}
	n.subs[ch] = struct{}{}
	n.mu.Unlock()
	// AfterFunc starts no goroutine until ctx is done.
	context.AfterFunc(ctx, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, ok := n.subs[ch]; ok {
			delete(n.subs, ch)
			close(ch)
		}
	})
	return ch
}

// fire sends a notice to every subscriber whose channel is empty.
func (n *notifier) fire() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default: // a notice is pending already: they coalesce
		}
	}
}

// close closes every subscription, and those made later at once.
func (n *notifier) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for ch := range n.subs {
		delete(n.subs, ch)
		close(ch)
	}
}

// subscribers returns the number of live subscriptions.
func (n *notifier) subscribers() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.subs)
}

// NotifyRevocations implements provider.RevocationNotifier: the channel
// receives a notice after this CA's Revoke, and after its watch of the
// store (see Options.RevocationPollInterval; with PostgreSQL, LISTEN/NOTIFY)
// or a Refresh or SignCRL learns of revocations other processes sharing
// the store made. When the notice arrives the revocations are in the CA's
// in-memory set, so IsRevoked, VerifyPeer and the CRLs it signs show
// them, and in the store, so LookupCertificate does. Notices coalesce
// and name no certificate. The channel is closed when ctx is done or the
// CA is closed.
func (ca *CA) NotifyRevocations(ctx context.Context) <-chan struct{} {
	return ca.revoked.notify.subscribe(ctx)
}
