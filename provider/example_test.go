package provider_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/kvmpki/kvmpki/provider"
)

// toyCA is a provider that does nothing; it stands for rootca, an ACME or a
// Vault provider.
type toyCA struct{ name string }

func (c *toyCA) Name() string        { return c.name }
func (c *toyCA) Description() string { return "toy CA " + c.name }

func (c *toyCA) CACertificates(context.Context) ([]*x509.Certificate, error) {
	return nil, errors.New("toy: no CA")
}

func (c *toyCA) Issue(context.Context, *provider.IssueRequest) (*provider.IssueResult, error) {
	return nil, &provider.RequestError{Reason: "toy CA"}
}

func (c *toyCA) Revoke(context.Context, *provider.RevokeRequest) error { return provider.ErrNotFound }

func (c *toyCA) Close() error { return nil }

func ExampleRegistry() {
	// The platform builds its registry and registers what it ships; the
	// configuration travels in the factory's closure.
	var reg provider.Registry
	for _, name := range []string{"root", "acme"} {
		err := reg.Register(name, "toy CA "+name, func(ctx context.Context) (provider.Provider, error) {
			return &toyCA{name: name}, nil
		})
		if err != nil {
			fmt.Println(err)
		}
	}

	// listCAProviders.
	for _, info := range reg.List() {
		fmt.Printf("%s: %s\n", info.Name, info.Description)
	}

	// ca.framework.provider.plugin = root.
	p, err := reg.Open(context.Background(), "root")
	if err != nil {
		fmt.Println(err)
		return
	}
	// One provider per process, shared by every request; closed at exit.
	defer p.Close()
	fmt.Println("opened", p.Name())

	// Optional capabilities are reached through the package functions.
	_, err = provider.SignCRL(context.Background(), p)
	fmt.Println(errors.Is(err, errors.ErrUnsupported))

	_, err = reg.Open(context.Background(), "vault")
	fmt.Println(err)
	// Output:
	// acme: toy CA acme
	// root: toy CA root
	// opened root
	// true
	// provider: unknown provider "vault"
}
