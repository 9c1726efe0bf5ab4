package rootca_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

func TestVerifyPeer(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	ca, _ := newCA(t, nil)
	lax, _ := newCA(t, &rootca.Options{InsecureAllowExpired: true, InsecureAllowMissingClientCert: true})
	foreign, _ := newCA(t, nil)

	ecdsa := provider.KeyAlgorithmECDSA
	client := issue(t, ca, &provider.IssueRequest{CommonName: "cpvm", Role: provider.RoleClient, KeyAlgorithm: ecdsa, Validity: 24 * time.Hour}).Certificate
	server := issue(t, ca, &provider.IssueRequest{CommonName: "ms1.example.org", IPAddresses: nil, Role: provider.RoleServer, KeyAlgorithm: ecdsa}).Certificate
	host := issue(t, ca, &provider.IssueRequest{CommonName: "kvm1.example.org", Role: provider.RoleHost, KeyAlgorithm: ecdsa}).Certificate
	revoked := issue(t, ca, &provider.IssueRequest{CommonName: "stolen", Role: provider.RoleHost, KeyAlgorithm: ecdsa}).Certificate
	require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: revoked.SerialNumber, Reason: provider.ReasonKeyCompromise}))
	alien := issue(t, foreign, &provider.IssueRequest{CommonName: "cpvm", Role: provider.RoleClient, KeyAlgorithm: ecdsa}).Certificate
	laxClient := issue(t, lax, &provider.IssueRequest{CommonName: "cpvm", Role: provider.RoleClient, KeyAlgorithm: ecdsa, Validity: 24 * time.Hour}).Certificate
	laxRevoked := issue(t, lax, &provider.IssueRequest{CommonName: "old", Role: provider.RoleClient, KeyAlgorithm: ecdsa, Validity: 24 * time.Hour}).Certificate
	require.NoError(t, lax.Revoke(ctx, &provider.RevokeRequest{Serial: laxRevoked.SerialNumber}))

	certs := func(c ...*x509.Certificate) []*x509.Certificate { return c }
	tests := []struct {
		name string
		ca   *rootca.CA
		req  provider.VerifyRequest
		want error // nil: accepted
	}{
		{"client accepted", ca, provider.VerifyRequest{Usage: provider.UsageClientAuth, Certificates: certs(client)}, nil},
		{"host as client", ca, provider.VerifyRequest{Usage: provider.UsageClientAuth, Certificates: certs(host)}, nil},
		{"host as server with name", ca, provider.VerifyRequest{Certificates: certs(host), Usage: provider.UsageServerAuth, ServerName: "kvm1.example.org"}, nil},
		{"server accepted", ca, provider.VerifyRequest{Certificates: certs(server), Usage: provider.UsageServerAuth, ServerName: "ms1.example.org"}, nil},
		{"no certificate, strict", ca, provider.VerifyRequest{Usage: provider.UsageClientAuth}, provider.ErrNoCertificate},
		{"no certificate, server side", lax, provider.VerifyRequest{Usage: provider.UsageServerAuth, ServerName: "ms1.example.org"}, provider.ErrNoCertificate},
		{"no certificate, non-strict", lax, provider.VerifyRequest{Usage: provider.UsageClientAuth}, nil},
		{"nil certificate", ca, provider.VerifyRequest{Usage: provider.UsageClientAuth, Certificates: []*x509.Certificate{nil}}, provider.ErrNoCertificate},
		{"revoked", ca, provider.VerifyRequest{Usage: provider.UsageClientAuth, Certificates: certs(revoked)}, provider.ErrRevoked},
		{"foreign CA, same subject", ca, provider.VerifyRequest{Usage: provider.UsageClientAuth, Certificates: certs(alien)}, provider.ErrUnknownAuthority},
		{"foreign CA, non-strict", lax, provider.VerifyRequest{Usage: provider.UsageClientAuth, Certificates: certs(alien)}, provider.ErrUnknownAuthority},
		{"client used as server", ca, provider.VerifyRequest{Certificates: certs(client), Usage: provider.UsageServerAuth, ServerName: "cpvm"}, provider.ErrIncompatibleUsage},
		{"server used as client", ca, provider.VerifyRequest{Certificates: certs(server), Usage: provider.UsageClientAuth}, provider.ErrIncompatibleUsage},
		{"wrong server name", ca, provider.VerifyRequest{Certificates: certs(host), Usage: provider.UsageServerAuth, ServerName: "kvm2.example.org"}, provider.ErrNameMismatch},
		{"expired", ca, provider.VerifyRequest{Usage: provider.UsageClientAuth, Certificates: certs(client), Time: now.Add(48 * time.Hour)}, provider.ErrExpired},
		{"not yet valid", ca, provider.VerifyRequest{Usage: provider.UsageClientAuth, Certificates: certs(client), Time: now.Add(-48 * time.Hour)}, provider.ErrExpired},
		{"expired, allowed", lax, provider.VerifyRequest{Usage: provider.UsageClientAuth, Certificates: certs(laxClient), Time: now.Add(48 * time.Hour)}, nil},
		{"expired and revoked, allowed expiry", lax, provider.VerifyRequest{Usage: provider.UsageClientAuth, Certificates: certs(laxRevoked), Time: now.Add(48 * time.Hour)}, provider.ErrRevoked},
		{"CA certificate as peer", ca, provider.VerifyRequest{Usage: provider.UsageClientAuth, Certificates: certs(ca.Certificate())}, provider.ErrIncompatibleUsage},
		// A zero Usage is x509.ExtKeyUsageAny to crypto/x509: it must not
		// pass a server certificate as a client, nor default to anything.
		{"zero usage refused", ca, provider.VerifyRequest{Certificates: certs(server)}, provider.ErrInvalidRequest},
		{"zero usage refused without certificate", lax, provider.VerifyRequest{}, provider.ErrInvalidRequest},
		// Without a name any host's server certificate would pass.
		{"server without name refused", ca, provider.VerifyRequest{Certificates: certs(server), Usage: provider.UsageServerAuth}, provider.ErrInvalidRequest},
		{"IP address as server name", ca, provider.VerifyRequest{Certificates: certs(host), Usage: provider.UsageServerAuth, ServerName: "10.0.0.9"}, provider.ErrNameMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ca.VerifyPeer(ctx, &tc.req)
			if tc.want == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			if tc.want == provider.ErrInvalidRequest {
				var re *provider.RequestError
				assert.ErrorAs(t, err, &re)
				return
			}
			var ve *provider.VerifyError
			require.ErrorAs(t, err, &ve)
			if len(tc.req.Certificates) > 0 && tc.req.Certificates[0] != nil {
				assert.Equal(t, tc.req.Certificates[0].SerialNumber, ve.Serial, "the error names the refused certificate")
			}
		})
	}
}

func TestIsRevoked(t *testing.T) {
	ctx := context.Background()
	ca, _ := newCA(t, nil)
	res := issue(t, ca, &provider.IssueRequest{CommonName: "kvm1", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	_, revoked := ca.IsRevoked(res.Certificate.SerialNumber)
	assert.False(t, revoked)
	require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: res.Certificate.SerialNumber, Reason: provider.ReasonCessationOfOperation}))
	r, revoked := ca.IsRevoked(res.Certificate.SerialNumber)
	require.True(t, revoked)
	assert.Equal(t, provider.ReasonCessationOfOperation, r.Reason)
	_, revoked = ca.IsRevoked(nil)
	assert.False(t, revoked)
}

func TestRevokeErrors(t *testing.T) {
	ctx := context.Background()
	ca, _ := newCA(t, nil)
	res := issue(t, ca, &provider.IssueRequest{CommonName: "kvm1", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	serial := res.Certificate.SerialNumber
	require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: serial, Reason: provider.ReasonKeyCompromise}))

	tests := []struct {
		name string
		req  *provider.RevokeRequest
		want error
	}{
		{"twice", &provider.RevokeRequest{Serial: serial, Reason: provider.ReasonSuperseded}, provider.ErrAlreadyRevoked},
		{"unknown serial", &provider.RevokeRequest{Serial: ca.Certificate().SerialNumber}, provider.ErrNotFound},
		{"nil request", nil, provider.ErrInvalidRequest},
		{"no serial", &provider.RevokeRequest{}, provider.ErrInvalidRequest},
		{"reason 7", &provider.RevokeRequest{Serial: serial, Reason: 7}, provider.ErrInvalidRequest},
		{"removeFromCRL", &provider.RevokeRequest{Serial: serial, Reason: provider.ReasonRemoveFromCRL}, provider.ErrInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, ca.Revoke(ctx, tc.req), tc.want)
		})
	}
	rec, err := ca.LookupCertificate(ctx, serial)
	require.NoError(t, err)
	assert.Equal(t, provider.ReasonKeyCompromise, rec.Reason, "the first revocation stands")
}

func TestRenew(t *testing.T) {
	ctx := context.Background()
	ca, _ := newCA(t, nil)
	old := issue(t, ca, &provider.IssueRequest{CommonName: "kvm1.example.org", DNSNames: []string{"kvm1"}, Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA, Validity: time.Hour})
	next, err := ca.Renew(ctx, &provider.RenewRequest{Certificate: old.Certificate, Validity: 48 * time.Hour})
	require.NoError(t, err)
	assert.NotEqual(t, old.Certificate.SerialNumber, next.Certificate.SerialNumber)
	assert.Equal(t, old.Certificate.DNSNames, next.Certificate.DNSNames)
	assert.Equal(t, old.Certificate.ExtKeyUsage, next.Certificate.ExtKeyUsage)
	assert.True(t, sameKey(old.Certificate.PublicKey, next.Certificate.PublicKey))
	assert.True(t, next.Certificate.NotAfter.After(old.Certificate.NotAfter))

	newKey := genKey(t, "p256")
	rekeyed, err := ca.Renew(ctx, &provider.RenewRequest{Certificate: old.Certificate, CSR: makeCSR(t, newKey, "evil.example.org", []string{"evil.example.org"}, nil)})
	require.NoError(t, err)
	assert.True(t, sameKey(newKey.Public(), rekeyed.Certificate.PublicKey))
	assert.NotContains(t, rekeyed.Certificate.DNSNames, "evil.example.org", "a renewal never widens the names")

	require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: old.Certificate.SerialNumber}))
	_, err = ca.Renew(ctx, &provider.RenewRequest{Certificate: old.Certificate})
	assert.ErrorIs(t, err, provider.ErrRevoked)

	other, _ := newCA(t, nil)
	foreign := issue(t, other, &provider.IssueRequest{CommonName: "x", Role: provider.RoleClient, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	_, err = ca.Renew(ctx, &provider.RenewRequest{Certificate: foreign.Certificate})
	assert.ErrorIs(t, err, provider.ErrInvalidRequest)
}
