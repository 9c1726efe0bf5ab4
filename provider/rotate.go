package provider

import (
	"context"
	"crypto/x509"
	"errors"
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
)

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

// RotationStatus is the state of a provider's CAs.
type RotationStatus struct {
	// Authorities are the provider's CAs, oldest first; the last one
	// issues.
	Authorities []RotationAuthority
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
