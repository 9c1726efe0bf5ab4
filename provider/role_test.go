package provider_test

import (
	"crypto/x509"
	"encoding/asn1"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

func TestRoleStringParseRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		role provider.Role
		text string
	}{
		{name: "host", role: provider.RoleHost, text: "host"},
		{name: "client", role: provider.RoleClient, text: "client"},
		{name: "server", role: provider.RoleServer, text: "server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.text, tc.role.String())
			assert.True(t, tc.role.Valid())
			got, err := provider.ParseRole(tc.role.String())
			require.NoError(t, err)
			assert.Equal(t, tc.role, got)
		})
	}
}

func TestRoleStringInvalid(t *testing.T) {
	tests := []struct {
		name string
		role provider.Role
		want string
	}{
		{name: "unspecified", role: provider.RoleUnspecified, want: "unspecified"},
		{name: "too large", role: provider.Role(42), want: "Role(42)"},
		{name: "negative", role: provider.Role(-1), want: "Role(-1)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.role.String())
			assert.False(t, tc.role.Valid())
			assert.Nil(t, tc.role.ExtKeyUsages())
		})
	}
}

func TestParseRoleUnknown(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{name: "empty", input: ""},
		// The zero role prints as "unspecified" but is not a role a
		// request may name.
		{name: "unspecified", input: "unspecified"},
		{name: "upper case", input: "HOST"},
		{name: "padded", input: " host"},
		{name: "other", input: "router"},
		{name: "go syntax", input: "Role(1)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := provider.ParseRole(tc.input)
			require.Error(t, err)
			assert.Equal(t, provider.RoleUnspecified, r)
			assert.Contains(t, err.Error(), "provider: unknown role")
		})
	}
}

func TestRoleExtKeyUsages(t *testing.T) {
	tests := []struct {
		name string
		role provider.Role
		want []x509.ExtKeyUsage
	}{
		{name: "host", role: provider.RoleHost, want: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		{name: "client", role: provider.RoleClient, want: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{name: "server", role: provider.RoleServer, want: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{name: "unspecified", role: provider.RoleUnspecified, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.role.ExtKeyUsages()
			assert.Equal(t, tc.want, got)
			if len(got) > 0 {
				// Callers may append to the result; that must not
				// change the next caller's answer.
				got[0] = x509.ExtKeyUsageCodeSigning
				assert.Equal(t, tc.want, tc.role.ExtKeyUsages())
			}
		})
	}
}

func TestRoleOf(t *testing.T) {
	tests := []struct {
		name    string
		eku     []x509.ExtKeyUsage
		unknown []asn1.ObjectIdentifier
		want    provider.Role
	}{
		{name: "no eku", want: provider.RoleHost},
		{name: "server and client", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, want: provider.RoleHost},
		{name: "client and server", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, want: provider.RoleHost},
		{name: "server only", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, want: provider.RoleServer},
		{name: "client only", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, want: provider.RoleClient},
		{name: "any", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, want: provider.RoleHost},
		{name: "server and code signing", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageServerAuth}, want: provider.RoleServer},
		{name: "code signing only", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, want: provider.RoleUnspecified},
		{name: "unknown eku only", unknown: []asn1.ObjectIdentifier{{1, 2, 3, 4}}, want: provider.RoleUnspecified},
		{name: "client and unknown eku", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, unknown: []asn1.ObjectIdentifier{{1, 2, 3, 4}}, want: provider.RoleClient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := &x509.Certificate{ExtKeyUsage: tc.eku, UnknownExtKeyUsage: tc.unknown}
			assert.Equal(t, tc.want, provider.RoleOf(cert))
		})
	}
}

// TestRoleOfIssued checks that RoleOf inverts ExtKeyUsages on real
// certificates, as a provider's inventory relies on it.
func TestRoleOfIssued(t *testing.T) {
	pki := newTestPKI(t)
	for _, role := range []provider.Role{provider.RoleHost, provider.RoleClient, provider.RoleServer} {
		t.Run(role.String(), func(t *testing.T) {
			leaf := pki.leaf(t, role.ExtKeyUsages(), role.String()+".test")
			assert.Equal(t, role, provider.RoleOf(leaf.Leaf))
		})
	}
}
