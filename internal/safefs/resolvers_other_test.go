//go:build unix && !linux

package safefs

import "testing"

func eachResolver(t *testing.T, f func(t *testing.T)) { t.Run("fallback", f) }
