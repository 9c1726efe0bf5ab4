package provider

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Errors of a CA rotation ([Rotator]). A provider's own errors match them
// with errors.Is (rootca's sentinels are these values).
var (
	// ErrRotationInProgress: a rotation was asked to begin while one is
	// in progress (a previous CA is not retired yet), or another
	// management server began one at the same moment.
	ErrRotationInProgress = errors.New("provider: a CA rotation is in progress")
	// ErrNotRetirable: no previous CA is left to retire (no rotation is
	// in progress).
	ErrNotRetirable = errors.New("provider: no CA to retire")
	// ErrLeavesRemain: the previous CA still has unexpired, unrevoked
	// certificates, so it was not retired.
	ErrLeavesRemain = errors.New("provider: the previous CA still has unexpired, unrevoked certificates")
	// ErrRotationBusy: another driver holds the lease on driving the
	// rotation ([RotationLeaser]). The error is a *[RotationBusyError]
	// naming it.
	ErrRotationBusy = errors.New("provider: another driver holds the CA rotation lease")
)

// RotationBusyError is a refused claim of the rotation lease
// ([RotationLeaser]): another driver holds it until Until; or, from a
// step that needs the lease, the caller does not hold it. It matches
// [ErrRotationBusy].
type RotationBusyError struct {
	// Holder names the driver holding the lease; empty when nobody does.
	Holder string
	// Until is when its lease expires unless renewed.
	Until time.Time
}

func (e *RotationBusyError) Error() string {
	if e.Holder == "" {
		return "provider: the CA rotation lease is not held (it expired or was released): claim it again"
	}
	return fmt.Sprintf("provider: another driver holds the CA rotation lease: %q until %s",
		e.Holder, e.Until.UTC().Format(time.RFC3339))
}

// Unwrap returns ErrRotationBusy.
func (e *RotationBusyError) Unwrap() error { return ErrRotationBusy }

// Rotator is a provider that can replace its CA with a successor while
// the current one keeps being trusted (rootca). A rotation is state of the
// provider's store: it survives restarts, and providers sharing the store
// see it.
type Rotator interface {
	// BeginCARotation makes a successor CA that issues every certificate
	// from then on, while the previous CA stays in CACertificates (so in
	// every bundle) until RetirePreviousCA. It returns an error matching
	// ErrRotationInProgress when a rotation is in progress already.
	BeginCARotation(ctx context.Context) error
	// CARotationStatus reports the provider's CAs as its store holds
	// them now.
	CARotationStatus(ctx context.Context) (*RotationStatus, error)
	// RetirePreviousCA ends a rotation: the previous CA leaves
	// CACertificates and its certificates stop being accepted. Unless
	// force, it refuses with an error matching ErrLeavesRemain while
	// that CA has unexpired, unrevoked certificates; without a rotation
	// in progress it returns an error matching ErrNotRetirable.
	RetirePreviousCA(ctx context.Context, force bool) error
}

// RotationLeaser is a [Rotator] whose store also keeps who drives a
// rotation, so that one driver works at a time across processes (two
// management servers on one database), and whether the bundle push that
// follows a retirement is still owed, so that a driver stopped between
// the retirement and the end of that push is resumed by the next one
// (rootca has it). A driver claims the lease before anything else,
// renews it well before it expires while it works, and releases it when
// it returns; a driver that crashed loses the lease when it expires.
//
// Leases compare times of the provider's clock against expiries other
// processes wrote with theirs: keep the servers' clocks synchronised
// (NTP) to well within a lease's duration.
type RotationLeaser interface {
	Rotator
	// ClaimCARotation gives holder the lease until ttl from now if no
	// other holder's lease is unexpired; holder's own lease is renewed
	// (its expiry moves). Otherwise it returns a *RotationBusyError
	// (matching ErrRotationBusy) naming the holder. Of several claims at
	// once, across processes sharing the store, exactly one wins. holder
	// is a non-empty UTF-8 name of at most 255 bytes, unique per driver,
	// without control characters and not ending in a space (rootca
	// refuses those: MariaDB would compare "a " equal to "a").
	ClaimCARotation(ctx context.Context, holder string, ttl time.Duration) error
	// ReleaseCARotation ends holder's lease. When holder holds none (it
	// expired, and another driver may have claimed it since) it changes
	// nothing and returns nil.
	ReleaseCARotation(ctx context.Context, holder string) error
	// SetCARotationPushPending records whether the push of the bundle
	// after a retirement is owed (RotationStatus.PushPending). A driver
	// sets it before RetirePreviousCA and clears it once every host has
	// the bundle, so that the record is never behind the retirement. It
	// needs holder's unexpired lease, else it returns a
	// *RotationBusyError.
	SetCARotationPushPending(ctx context.Context, holder string, pending bool) error
}

// RotationLease is the lease on driving a rotation ([RotationLeaser]).
type RotationLease struct {
	// Holder names the driver holding it.
	Holder string
	// Until is when it expires unless renewed; it may be past.
	Until time.Time
}

// RotationStatus is the state of a provider's CAs.
type RotationStatus struct {
	// Authorities are the provider's CAs, oldest first; the last one
	// issues.
	Authorities []RotationAuthority

	// Lease is the lease on driving the rotation, nil when none is held
	// (or the provider is not a [RotationLeaser]). An expired lease is
	// reported until it is released or claimed again.
	Lease *RotationLease
	// PushPending is set when a driver retired (or was about to retire)
	// the previous CA and has not yet pushed the bundle without it to
	// every host. The next driver pushes it.
	PushPending bool
}

// RotationAuthority is one CA of a [RotationStatus].
type RotationAuthority struct {
	// Certificate is the CA's issuing certificate.
	Certificate *x509.Certificate
	// Issuing is set for the CA that issues new certificates.
	Issuing bool
	// Trusted is false once the CA is retired.
	Trusted bool
	// Leaves counts its unexpired, unrevoked certificates.
	Leaves int
}

// InProgress reports whether a rotation is in progress: more than one CA
// is trusted.
func (s *RotationStatus) InProgress() bool {
	return len(s.Previous()) > 0
}

// Issuing returns the issuing CA, or nil if s lists none.
func (s *RotationStatus) Issuing() *RotationAuthority {
	for i := range s.Authorities {
		if s.Authorities[i].Issuing {
			return &s.Authorities[i]
		}
	}
	return nil
}

// Previous returns the CAs that are trusted but do not issue: those a
// rotation replaces.
func (s *RotationStatus) Previous() []RotationAuthority {
	var out []RotationAuthority
	for _, a := range s.Authorities {
		if a.Trusted && !a.Issuing {
			out = append(out, a)
		}
	}
	return out
}

// BeginRotation begins a CA rotation with p if p is a [Rotator].
func BeginRotation(ctx context.Context, p Provider) error {
	r, ok := p.(Rotator)
	if !ok {
		return lacks(p, "CA rotation")
	}
	return r.BeginCARotation(ctx)
}

// Rotation returns the state of p's CAs if p is a [Rotator].
func Rotation(ctx context.Context, p Provider) (*RotationStatus, error) {
	r, ok := p.(Rotator)
	if !ok {
		return nil, lacks(p, "CA rotation")
	}
	return r.CARotationStatus(ctx)
}

// RetirePrevious retires p's previous CA if p is a [Rotator].
func RetirePrevious(ctx context.Context, p Provider, force bool) error {
	r, ok := p.(Rotator)
	if !ok {
		return lacks(p, "CA rotation")
	}
	return r.RetirePreviousCA(ctx, force)
}

// ClaimRotation claims or renews the lease on driving p's CA rotation
// for holder if p is a [RotationLeaser].
func ClaimRotation(ctx context.Context, p Provider, holder string, ttl time.Duration) error {
	r, ok := p.(RotationLeaser)
	if !ok {
		return lacks(p, "CA rotation leases")
	}
	return r.ClaimCARotation(ctx, holder, ttl)
}

// ReleaseRotation releases holder's lease on driving p's CA rotation if
// p is a [RotationLeaser].
func ReleaseRotation(ctx context.Context, p Provider, holder string) error {
	r, ok := p.(RotationLeaser)
	if !ok {
		return lacks(p, "CA rotation leases")
	}
	return r.ReleaseCARotation(ctx, holder)
}

// SetRotationPushPending records whether the bundle push after a
// retirement is owed, under holder's lease, if p is a [RotationLeaser].
func SetRotationPushPending(ctx context.Context, p Provider, holder string, pending bool) error {
	r, ok := p.(RotationLeaser)
	if !ok {
		return lacks(p, "CA rotation leases")
	}
	return r.SetCARotationPushPending(ctx, holder, pending)
}
