package rootca

import (
	"context"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// ErrRotationBusy is matched by the *provider.RotationBusyError a
// RotationLeaseStore returns when another driver holds the rotation
// lease. It is provider.ErrRotationBusy.
var ErrRotationBusy = provider.ErrRotationBusy

// RotationLease is the state of the driver of a rotation that a
// RotationLeaseStore keeps: the lease, and the bundle push its holder
// owes. Both live in one record because only the lease holder changes
// PushPending.
type RotationLease struct {
	// Holder names the driver holding the lease; empty when it is free.
	Holder string
	// Until is when the lease expires unless renewed; zero when free.
	Until time.Time
	// PushPending is set while the push of the bundle that follows a
	// retirement is owed (see provider.RotationLeaser).
	PushPending bool
}

// A RotationLeaseStore is a RotationStore that also keeps the lease on
// driving a rotation, so that one driver (ca.Manager.Rotate) works at a
// time across the processes sharing the store, and the push a driver
// owes after a retirement, so that the next driver finishes it. MemStore
// and sqlstore.Store (schema version 4) implement it; a CA on one is a
// provider.RotationLeaser.
//
// Times are the caller's clock (the CA's Options.Time): the store
// compares them and keeps them, nothing more.
type RotationLeaseStore interface {
	RotationStore
	// ClaimRotation gives holder the lease until until, when the lease
	// is free, held by holder (a renewal) or expired at now; otherwise it
	// returns a *provider.RotationBusyError naming the holder, matching
	// ErrRotationBusy, and changes nothing. It is one compare-and-set:
	// of several processes claiming at once, exactly one wins. holder
	// is non-empty UTF-8 of at most 255 bytes without control
	// characters, not ending in a space (MariaDB's comparison would
	// ignore it), compared byte for byte; until must be after now.
	ClaimRotation(ctx context.Context, holder string, now, until time.Time) error
	// ReleaseRotation frees the lease if holder holds it (expired or
	// not); otherwise it changes nothing and returns nil. PushPending is
	// kept.
	ReleaseRotation(ctx context.Context, holder string) error
	// SetRotationPushPending sets PushPending, if holder holds a lease
	// unexpired at now; otherwise it returns a
	// *provider.RotationBusyError and changes nothing.
	SetRotationPushPending(ctx context.Context, holder string, now time.Time, pending bool) error
	// RotationLease returns the lease and PushPending as stored.
	RotationLease(ctx context.Context) (*RotationLease, error)
}
