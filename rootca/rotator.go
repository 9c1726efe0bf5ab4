package rootca

import (
	"context"

	"github.com/kvmpki/kvmpki/provider"
)

var _ provider.Rotator = (*CA)(nil)

// BeginCARotation is BeginRotation with the zero RotateOptions, for
// [provider.Rotator].
func (ca *CA) BeginCARotation(ctx context.Context) error {
	_, err := ca.BeginRotation(ctx, nil)
	return err
}

// CARotationStatus is RotationStatus as a [provider.RotationStatus]. It
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
	return out, nil
}

// RetirePreviousCA is RetirePrevious, for [provider.Rotator].
func (ca *CA) RetirePreviousCA(ctx context.Context, force bool) error {
	_, err := ca.RetirePrevious(ctx, &RetireOptions{Force: force})
	return err
}
