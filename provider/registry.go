package provider

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Factory opens a provider. It is called by [Registry.Open], so a
// provider's configuration travels in the closure.
type Factory func(ctx context.Context) (Provider, error)

// Info describes a registered provider, as CloudStack's listCAProviders
// lists them.
type Info struct {
	Name        string
	Description string
}

// Registry maps provider names to factories. The platform builds one and
// registers the providers it ships; the zero value is an empty registry
// ready to use. A Registry is safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]registration
}

type registration struct {
	info    Info
	factory Factory
}

// Register adds a provider. Registering an empty name, a nil factory or a
// name twice is an error.
func (r *Registry) Register(name, description string, f Factory) error {
	if name == "" {
		return fmt.Errorf("provider: register: empty provider name")
	}
	if f == nil {
		return fmt.Errorf("provider: register %q: nil factory", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.factories[name]; dup {
		return fmt.Errorf("provider: register %q: name already registered", name)
	}
	if r.factories == nil {
		r.factories = make(map[string]registration)
	}
	r.factories[name] = registration{Info{name, description}, f}
	return nil
}

// List returns the registered providers sorted by name.
func (r *Registry) List() []Info {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Info, 0, len(r.factories))
	for _, reg := range r.factories {
		out = append(out, reg.info)
	}
	slices.SortFunc(out, func(a, b Info) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Open opens the provider registered under name, the value of CloudStack's
// ca.framework.provider.plugin setting. An unknown name yields an error
// matching ErrUnknownProvider.
//
// Every call runs the factory and returns a new provider, which the caller
// must Close. A provider is safe for concurrent use and may hold
// connections, a key or background work, so open it once per process and
// share it (or cache it by name); do not open one per request.
//
// The opened provider's Name must be name: a factory registered under the
// wrong name is an error (the provider is closed), so that the name a
// platform stores with each certificate always leads back to its CA.
func (r *Registry) Open(ctx context.Context, name string) (Provider, error) {
	r.mu.RLock()
	reg, ok := r.factories[name]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownProvider, name)
	}
	p, err := reg.factory(ctx)
	if err != nil {
		return nil, fmt.Errorf("provider: open %q: %w", name, err)
	}
	if p == nil {
		return nil, fmt.Errorf("provider: open %q: factory returned no provider", name)
	}
	if got := p.Name(); got != name {
		if err := p.Close(); err != nil {
			return nil, fmt.Errorf("provider: open %q: factory returned provider %q (and closing it failed: %v)", name, got, err)
		}
		return nil, fmt.Errorf("provider: open %q: factory returned provider %q", name, got)
	}
	return p, nil
}
