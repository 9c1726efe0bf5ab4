package rootca

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

var (
	_ provider.Rotator        = (*CA)(nil)
	_ provider.RotationLeaser = (*CA)(nil)
)

// BeginCARotation is BeginRotation with the zero RotateOptions, for
// [provider.Rotator].
func (ca *CA) BeginCARotation(ctx context.Context) error {
	_, err := ca.BeginRotation(ctx, nil)
	return err
}

// CARotationStatus is RotationStatus as a [provider.RotationStatus], with
// the rotation lease and PushPending on a RotationLeaseStore. It
// refreshes the CA from the store first (Refresh), so that a rotation
// another CA sharing the store began or ended is in effect here at once.
func (ca *CA) CARotationStatus(ctx context.Context) (*provider.RotationStatus, error) {
	if err := ca.Refresh(ctx); err != nil {
		return nil, err
	}
	gens, err := ca.RotationStatus(ctx)
	if err != nil {
		return nil, err
	}
	out := &provider.RotationStatus{Authorities: make([]provider.RotationAuthority, len(gens))}
	for i, g := range gens {
		out.Authorities[i] = provider.RotationAuthority{Certificate: g.Certificate, Issuing: g.Issuing,
			Trusted: g.RetiredAt.IsZero(), Leaves: g.Leaves}
	}
	if ls, ok := ca.store.(RotationLeaseStore); ok {
		l, err := ls.RotationLease(ctx)
		if err != nil {
			return nil, fmt.Errorf("rootca: rotation status: %w", err)
		}
		if l.Holder != "" {
			out.Lease = &provider.RotationLease{Holder: l.Holder, Until: l.Until}
		}
		out.PushPending = l.PushPending
	}
	return out, nil
}

// RetirePreviousCA is RetirePrevious, for [provider.Rotator].
func (ca *CA) RetirePreviousCA(ctx context.Context, force bool) error {
	_, err := ca.RetirePrevious(ctx, &RetireOptions{Force: force})
	return err
}

// leaseStore returns the store as a RotationLeaseStore, or an error
// matching errors.ErrUnsupported.
func (ca *CA) leaseStore(op string) (RotationLeaseStore, error) {
	ls, ok := ca.store.(RotationLeaseStore)
	if !ok {
		return nil, fmt.Errorf("rootca: %s: the store keeps no rotation lease: %w", op, errors.ErrUnsupported)
	}
	return ls, nil
}

// ClaimCARotation claims or renews the rotation lease for holder until
// ttl from now (Options.Time), for [provider.RotationLeaser]. The store
// must be a RotationLeaseStore (MemStore and sqlstore.Store are), else
// the error matches errors.ErrUnsupported.
func (ca *CA) ClaimCARotation(ctx context.Context, holder string, ttl time.Duration) error {
	ls, err := ca.leaseStore("claim rotation")
	if err != nil {
		return err
	}
	if ttl <= 0 {
		return errors.New("rootca: claim rotation: the lease duration is not positive")
	}
	now := ca.opts.now()
	return ls.ClaimRotation(ctx, holder, now, now.Add(ttl))
}

// ReleaseCARotation releases holder's rotation lease, for
// [provider.RotationLeaser].
func (ca *CA) ReleaseCARotation(ctx context.Context, holder string) error {
	ls, err := ca.leaseStore("release rotation")
	if err != nil {
		return err
	}
	return ls.ReleaseRotation(ctx, holder)
}

// SetCARotationPushPending records whether the bundle push after a
// retirement is owed, under holder's lease, for
// [provider.RotationLeaser].
func (ca *CA) SetCARotationPushPending(ctx context.Context, holder string, pending bool) error {
	ls, err := ca.leaseStore("set rotation push pending")
	if err != nil {
		return err
	}
	return ls.SetRotationPushPending(ctx, holder, ca.opts.now(), pending)
}
