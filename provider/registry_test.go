package provider_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

func staticFactory(name string) provider.Factory {
	return func(context.Context) (provider.Provider, error) {
		return &staticProvider{name: name}, nil
	}
}

func TestRegistryZeroValue(t *testing.T) {
	var r provider.Registry
	assert.Empty(t, r.List())
	_, err := r.Open(context.Background(), "root")
	assert.ErrorIs(t, err, provider.ErrUnknownProvider)

	require.NoError(t, r.Register("root", "built-in root CA", staticFactory("root")))
	assert.Equal(t, []provider.Info{{Name: "root", Description: "built-in root CA"}}, r.List())
}

func TestRegistryRegisterValidation(t *testing.T) {
	tests := []struct {
		name    string
		reg     string
		factory provider.Factory
		msg     string
	}{
		{name: "empty name", reg: "", factory: staticFactory("x"), msg: "empty provider name"},
		{name: "nil factory", reg: "vault", factory: nil, msg: "nil factory"},
		{name: "duplicate", reg: "root", factory: staticFactory("root"), msg: "already registered"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r provider.Registry
			require.NoError(t, r.Register("root", "built-in", staticFactory("root")))
			err := r.Register(tc.reg, "desc", tc.factory)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
			assert.Contains(t, err.Error(), "provider: register")
			// A refused registration leaves the registry unchanged.
			assert.Equal(t, []provider.Info{{Name: "root", Description: "built-in"}}, r.List())
		})
	}
}

func TestRegistryListSorted(t *testing.T) {
	var r provider.Registry
	for _, name := range []string{"vault", "acme", "root", "Zed", "acme-staging"} {
		require.NoError(t, r.Register(name, "desc "+name, staticFactory(name)))
	}
	var names []string
	for _, info := range r.List() {
		names = append(names, info.Name)
		assert.Equal(t, "desc "+info.Name, info.Description)
	}
	assert.Equal(t, []string{"Zed", "acme", "acme-staging", "root", "vault"}, names)

	// The result is the caller's to change.
	list := r.List()
	list[0].Name = "changed"
	assert.Equal(t, "Zed", r.List()[0].Name)
}

func TestRegistryOpen(t *testing.T) {
	errBoom := errors.New("vault: connection refused")
	var r provider.Registry
	require.NoError(t, r.Register("root", "built-in", staticFactory("root")))
	require.NoError(t, r.Register("broken", "fails", func(context.Context) (provider.Provider, error) {
		return nil, errBoom
	}))
	require.NoError(t, r.Register("nil", "returns nothing", func(context.Context) (provider.Provider, error) {
		return nil, nil
	}))
	type ctxKey struct{}
	require.NoError(t, r.Register("ctx", "checks its context", func(ctx context.Context) (provider.Provider, error) {
		if ctx.Value(ctxKey{}) != "set" {
			return nil, errors.New("context not passed")
		}
		return &staticProvider{name: "ctx"}, nil
	}))
	// A factory registered under the wrong name: its provider would
	// answer to "vault" in every record the platform keeps.
	misnamed := &staticProvider{name: "vault"}
	require.NoError(t, r.Register("acme", "misnamed", func(context.Context) (provider.Provider, error) {
		return misnamed, nil
	}))

	tests := []struct {
		name    string
		open    string
		wantErr error  // nil when Open must succeed
		msg     string // substring of the error
	}{
		{name: "known", open: "root"},
		{name: "context passed", open: "ctx"},
		{name: "unknown", open: "step", wantErr: provider.ErrUnknownProvider, msg: `"step"`},
		{name: "case matters", open: "Root", wantErr: provider.ErrUnknownProvider, msg: `"Root"`},
		{name: "factory error wrapped", open: "broken", wantErr: errBoom, msg: `provider: open "broken": vault: connection refused`},
		{name: "nil provider refused", open: "nil", msg: `provider: open "nil": factory returned no provider`},
		{name: "name mismatch refused", open: "acme", msg: `provider: open "acme": factory returned provider "vault"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.WithValue(context.Background(), ctxKey{}, "set")
			p, err := r.Open(ctx, tc.open)
			if tc.msg == "" {
				require.NoError(t, err)
				require.NotNil(t, p)
				assert.Equal(t, tc.open, p.Name())
				return
			}
			require.Error(t, err)
			assert.Nil(t, p)
			assert.Contains(t, err.Error(), tc.msg)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
			}
			if tc.wantErr != provider.ErrUnknownProvider {
				assert.NotErrorIs(t, err, provider.ErrUnknownProvider)
			}
		})
	}
	assert.Equal(t, int32(1), misnamed.closed.Load(), "the misnamed provider is closed, not leaked")
}

// TestRegistryConcurrent is meant for -race: registrations, listings and
// opens interleave.
func TestRegistryConcurrent(t *testing.T) {
	var r provider.Registry
	const workers, perWorker = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker*3)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				name := fmt.Sprintf("p%d-%d", w, i)
				if err := r.Register(name, "", staticFactory(name)); err != nil {
					errs <- err
				}
				// Every worker also races for one shared name.
				_ = r.Register("shared", "", staticFactory("shared"))
				_ = r.List()
				p, err := r.Open(context.Background(), name)
				if err != nil {
					errs <- err
				} else if p.Name() != name {
					errs <- fmt.Errorf("opened %q as %q", name, p.Name())
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.Len(t, r.List(), workers*perWorker+1)
}
