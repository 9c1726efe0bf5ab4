package ca_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

func TestIdentityNames(t *testing.T) {
	e := newEnv(t, nil)
	_, mgmt, err := net.ParseCIDR("10.1.0.0/16")
	require.NoError(t, err)
	id, err := e.m.NewIdentity(context.Background(), &ca.IdentityOptions{
		Hostname: "MS1.example.org",
		DNSNames: []string{"", "ms.example.org", "ms1.example.org"},
		Addresses: []net.IP{
			net.ParseIP("10.1.2.3"), net.ParseIP("192.0.2.1"), net.ParseIP("fe80::1"),
			net.ParseIP("169.254.0.9"), net.ParseIP("10.1.2.3"),
		},
		ManagementCIDRs: []*net.IPNet{mgmt},
	})
	require.NoError(t, err)
	c := id.Certificate()
	assert.Equal(t, []string{"ms1.example.org", "ms.example.org", "cloudstack.internal"}, c.DNSNames)
	require.Len(t, c.IPAddresses, 1, "only the address inside the management CIDR, link-local excluded")
	assert.Equal(t, "10.1.2.3", c.IPAddresses[0].String())
	assert.Equal(t, provider.RoleHost, provider.RoleOf(c))
	assert.False(t, c.IsCA)
	assert.NotEqual(t, e.caCert.PublicKey, c.PublicKey, "never the CA key")

	for _, bad := range []*ca.IdentityOptions{nil, {}, {Hostname: "cloudstack.internal"}, {Hostname: "bad name"}, {Hostname: "ms1.example.org", DNSNames: []string{"x.cloudstack.internal"}}, {Hostname: "ms1.example.org", DNSNames: []string{"bad_name"}}} {
		_, err := e.m.NewIdentity(context.Background(), bad)
		assert.Error(t, err)
	}
}

func TestIdentityNotAfterWithinCA(t *testing.T) {
	e := newEnv(t, &envOptions{caValid: 100 * 24 * time.Hour})
	id := e.identity(t)
	assert.False(t, id.Certificate().NotAfter.After(e.caCert.NotAfter))
	assert.WithinDuration(t, e.caCert.NotAfter, id.Certificate().NotAfter, 2*time.Minute)
}

func TestIdentityRenewedInPlace(t *testing.T) {
	e := newEnv(t, nil)
	id := e.identity(t)
	_, cert := e.issue(t, provider.RoleHost, []string{"agent.example"}, nil)
	s := e.serveAgents(t, &ca.AgentServerConfig{Identity: id})
	first := id.Certificate()

	renewed, err := id.RenewIfDue(context.Background())
	require.NoError(t, err)
	assert.False(t, renewed, "a fresh certificate is not due")

	// Enter the alert window (15 days before NotAfter).
	e.clock.Set(first.NotAfter.Add(-14 * 24 * time.Hour))
	assert.True(t, id.Due())
	renewed, err = id.RenewIfDue(context.Background())
	require.NoError(t, err)
	require.True(t, renewed)
	second := id.Certificate()
	assert.NotEqual(t, first.SerialNumber, second.SerialNumber)

	// The next handshake sees the new certificate, no restart.
	cfg := e.clientConfig(&cert)
	cfg.Time = e.clock.Now
	c, err := tls.Dial("tcp", s.addr, cfg)
	require.NoError(t, err)
	assert.True(t, c.ConnectionState().PeerCertificates[0].Equal(second))
	c.Close()
}
