// Package redacttest checks, in the SQL backends' tests, that an error
// holds no piece of a password, independently of package redact's own
// check.
package redacttest

import (
	"strings"
	"testing"
)

// AssertNoPiece fails t if err's text holds password, or any piece of it
// of three bytes or more between the characters a URL parser splits on
// ('@', '/', '?', '#', ':'), the pieces that a parser taking the tail of a
// password for a host would echo.
func AssertNoPiece(t testing.TB, err error, password string) {
	t.Helper()
	if err == nil {
		return
	}
	pieces := []string{password}
	for _, f := range strings.FieldsFunc(password, func(r rune) bool { return strings.ContainsRune("@/?#:", r) }) {
		if len(f) >= 3 {
			pieces = append(pieces, f)
		}
	}
	for _, p := range pieces {
		if strings.Contains(err.Error(), p) {
			t.Errorf("error %q holds %q, a piece of the password", err, p)
		}
	}
}
