package storecheck

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kvmpki/kvmpki/provider"
)

// MaxHolder bounds the name of a rotation lease's holder, in bytes.
const MaxHolder = 255

// Holder checks the holder of a rotation lease: non-empty UTF-8 of at
// most MaxHolder bytes, without control characters (it is printed in
// errors and logs), not ending in a space: MariaDB compares its text
// with PAD SPACE, so that "a " would equal "a" and renew, release or
// take over the lease of another driver.
func Holder(op, holder string) error {
	switch {
	case holder == "":
		return fmt.Errorf("rootca: %s: empty lease holder", op)
	case len(holder) > MaxHolder:
		return fmt.Errorf("rootca: %s: lease holder of %d bytes, more than %d", op, len(holder), MaxHolder)
	case !utf8.ValidString(holder):
		return fmt.Errorf("rootca: %s: lease holder is not UTF-8", op)
	case strings.HasSuffix(holder, " "):
		return fmt.Errorf("rootca: %s: lease holder ends in a space", op)
	}
	for _, r := range holder {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("rootca: %s: lease holder holds a control character", op)
		}
	}
	return nil
}

// Claim checks the arguments of ClaimRotation.
func Claim(holder string, now, until time.Time) error {
	if err := Holder("claim rotation", holder); err != nil {
		return err
	}
	if now.IsZero() || !until.After(now) {
		return errors.New("rootca: claim rotation: the lease must end after now")
	}
	if err := Time("lease", until); err != nil {
		return err
	}
	return Time("lease", now)
}

// Busy is the refusal of a step that needs an unexpired lease, the lease
// being holder's until until: a *provider.RotationBusyError naming the
// holder, or naming nobody when the lease is free or expired at now,
// since then nobody holds it (not "another driver holds it", which a
// driver whose own lease expired would otherwise be told about itself).
func Busy(holder string, until, now time.Time) error {
	if holder == "" || !until.After(now) {
		return &provider.RotationBusyError{}
	}
	return &provider.RotationBusyError{Holder: holder, Until: until}
}
