package acme

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/examples/acmeplugin/internal/pebbletest"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/provider/providertest"
)

// newPebbleProvider opens the plugin on a fresh Pebble through a
// registry, as the platform does.
func newPebbleProvider(t testing.TB, pb *pebbletest.Server) provider.Provider {
	t.Helper()
	reg := &provider.Registry{}
	require.NoError(t, reg.Register("acme", "ACME CA (Pebble)", Factory(Config{
		DirectoryURL:   pb.Directory,
		AccountKey:     pebbletest.NewAccountKey(t),
		HTTPClient:     pb.Client,
		CACertificates: pb.Chain,
		Solver:         &HTTP01Solver{},
	})))
	p, err := reg.Open(t.Context(), "acme")
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestConformance runs provider/providertest against the plugin on
// Pebble, adapting only to what an ACME CA cannot do.
func TestConformance(t *testing.T) {
	pb := pebbletest.Start(t)
	p := newPebbleProvider(t, pb)
	providertest.Run(t, func(t *testing.T) provider.Provider { return p }, &providertest.Options{
		Domain: "kvm.example.test",
		// Pebble 2.4's profile gives serverAuth and clientAuth: the host
		// role only.
		Roles: []provider.Role{provider.RoleHost},
		// An ACME CA certifies exactly the CSR's names.
		ExactCSRNames: true,
		// An ACME CA decides the validity (Pebble 2.4: five years).
		FixedValidity: true,
		// Pebble 2.4 refuses an order with IPv4 and IPv6 addresses
		// together; one family works.
		IPAddresses: []net.IP{net.ParseIP("192.0.2.1").To4()},
	})
}
