package ca

import "github.com/kvmpki/kvmpki/provider"

// WithProvider runs fn with m's current provider.
func WithProvider(m *Manager, fn func(provider.Provider) error) error {
	return m.with(func(h *handle) error { return fn(h.p) })
}
