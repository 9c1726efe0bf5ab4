package rootca

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// pollTimeout bounds one background catch-up, so that a database that
// stops answering without closing the connection cannot stall the CA's
// polling (or a SignCRL waiting for it) for the length of a TCP timeout.
const pollTimeout = 10 * time.Second

// maxPollBackoff bounds the wait between polls while the store fails, so
// that a CA finds a restarted database soon after it is back.
const maxPollBackoff = 5 * time.Second

// revocationSync keeps a CA's in-memory revocation set in step with a
// store that other CAs (other management servers) revoke through.
type revocationSync struct {
	mu     sync.Mutex // serialises catch-ups, which advance cursor
	feed   RevocationFeed
	cursor int64

	stopOnce sync.Once
	stop     context.CancelFunc // nil when not watching
	done     chan struct{}
}

// catchUp adds the revocations committed to the store since the last
// catch-up to the in-memory set. With a store that is not a
// RevocationFeed, it reads them all.
func (ca *CA) catchUp(ctx context.Context) error {
	s := &ca.sync
	if s.feed == nil {
		all, err := ca.store.Revocations(ctx)
		if err != nil {
			return fmt.Errorf("rootca: load revocations: %w", err)
		}
		ca.revoked.merge(all)
		return ca.refreshGenerations(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	revs, next, err := s.feed.RevocationsSince(ctx, s.cursor)
	if err != nil {
		return fmt.Errorf("rootca: load revocations: %w", err)
	}
	ca.revoked.merge(revs)
	s.cursor = next
	return ca.refreshGenerations(ctx)
}

// startWatching starts the goroutine that keeps the revocation set in
// step with a shared store, unless the store is not a RevocationFeed or
// polling is turned off. CA.Close stops it.
func (ca *CA) startWatching() {
	if ca.sync.feed == nil || ca.opts.RevocationPollInterval < 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	ca.sync.stop = cancel
	ca.sync.done = make(chan struct{})
	go ca.watch(ctx)
}

// stopWatching stops the goroutine startWatching started and waits for it.
func (ca *CA) stopWatching() {
	ca.sync.stopOnce.Do(func() {
		if ca.sync.stop != nil {
			ca.sync.stop()
			<-ca.sync.done
		}
	})
}

// watch catches up with the store after every notification (a
// RevocationWaiter) or poll interval, until ctx is cancelled or the store
// is closed. Failures are logged once, with the recovery, and retried with
// a growing pause.
func (ca *CA) watch(ctx context.Context) {
	defer close(ca.sync.done)
	interval := ca.opts.revocationPollInterval()
	waiter, _ := ca.sync.feed.(RevocationWaiter)
	delay := interval
	failing := false
	for {
		woken := false
		if waiter != nil && !failing {
			wctx, cancel := context.WithTimeout(ctx, interval)
			err := waiter.WaitRevocation(wctx)
			cancel()
			switch {
			case err == nil:
				woken = true
			case errors.Is(err, errors.ErrUnsupported):
				waiter = nil
			case errors.Is(err, ErrStoreClosed):
				return
			case ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded):
				ca.logWatch(ctx, slog.LevelWarn, "rootca: waiting for revocation notifications failed; polling", err)
				failing = true
			default:
				woken = true // the poll interval passed
			}
		}
		if !woken {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
		}
		if ctx.Err() != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, pollTimeout)
		err := ca.catchUp(pctx)
		cancel()
		switch {
		case errors.Is(err, ErrStoreClosed) || ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				ca.logWatch(ctx, slog.LevelWarn, "rootca: cannot read revocations from the store; retrying", err)
			}
			failing = true
			delay = min(2*delay, maxPollBackoff)
		case failing:
			ca.logWatch(ctx, slog.LevelInfo, "rootca: reading revocations from the store again", nil)
			failing = false
			delay = interval
		}
	}
}

func (ca *CA) logWatch(ctx context.Context, level slog.Level, msg string, err error) {
	l := ca.opts.Logger
	if l == nil {
		return
	}
	if err != nil {
		l.LogAttrs(ctx, level, msg, slog.String("error", err.Error()))
		return
	}
	l.LogAttrs(ctx, level, msg)
}
