package storecheck

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

var (
	// ErrRotationInProgress is returned by AddGeneration when a
	// generation other than the newest is not retired yet, or when
	// another process added the generation first.
	// It is provider.ErrRotationInProgress.
	ErrRotationInProgress = provider.ErrRotationInProgress
	// ErrNotRetirable is returned by RetireGeneration for the newest
	// generation (the issuing CA), an unknown one, or one retired already.
	// It is provider.ErrNotRetirable.
	ErrNotRetirable = provider.ErrNotRetirable
)

// Generation checks a generation to add: its number and chain.
func Generation(number int, certs [][]byte, isNil bool) error {
	if isNil {
		return errors.New("rootca: add generation: nil generation")
	}
	if number < 2 {
		return fmt.Errorf("rootca: add generation: number %d, want 2 or more (CreateAuthority stores the first)", number)
	}
	if err := Authority(certs, false); err != nil {
		return fmt.Errorf("rootca: add generation %d: %w", number, err)
	}
	return nil
}

// Retirement checks the arguments of RetireGeneration.
func Retirement(number int, at time.Time) error {
	if number < 1 {
		return fmt.Errorf("%w (generation %d)", ErrNotRetirable, number)
	}
	if at.IsZero() {
		return fmt.Errorf("rootca: retire generation %d: zero time", number)
	}
	return Time("retirement", at)
}
