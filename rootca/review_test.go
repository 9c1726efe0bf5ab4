package rootca_test

import (
	"context"
	"crypto/x509"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// A leaf of a sibling CA under the same offline root must not pass: this
// CA knows nothing of the sibling's revocations.
func TestVerifyPeerRefusesSiblingIntermediate(t *testing.T) {
	ctx := context.Background()
	root, rootKey, err := rootca.NewRoot(nil)
	require.NoError(t, err)
	parent := &rootca.Issuer{Certificate: root, Signer: rootKey}
	prod, _ := newCACreate(t, &rootca.CreateOptions{Parent: parent})
	staging, _ := newCACreate(t, &rootca.CreateOptions{Parent: parent})
	leaf := issue(t, staging, &provider.IssueRequest{CommonName: "kvm1", Role: provider.RoleClient, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	require.NoError(t, staging.Revoke(ctx, &provider.RevokeRequest{Serial: leaf.Certificate.SerialNumber}))

	err = prod.VerifyPeer(ctx, &provider.VerifyRequest{Certificates: []*x509.Certificate{leaf.Certificate, leaf.Chain[0]}, Usage: provider.UsageClientAuth})
	assert.ErrorIs(t, err, provider.ErrUnknownAuthority)
	own := issue(t, prod, &provider.IssueRequest{CommonName: "kvm2", Role: provider.RoleClient, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	assert.NoError(t, prod.VerifyPeer(ctx, &provider.VerifyRequest{Certificates: []*x509.Certificate{own.Certificate, own.Chain[0]}, Usage: provider.UsageClientAuth}))
}

// A revocation another process made reaches this one when it tries the
// same revocation, and a Refresh never forgets a revocation.
func TestRevocationsOnlyGrow(t *testing.T) {
	ctx := context.Background()
	ca, store := newCA(t, nil)
	leaf := issue(t, ca, &provider.IssueRequest{CommonName: "kvm1", Role: provider.RoleClient, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	serial := leaf.Certificate.SerialNumber
	// "Another process" revokes behind this CA's back.
	_, err := store.Revoke(ctx, serial, provider.ReasonKeyCompromise, time.Now())
	require.NoError(t, err)
	assert.NoError(t, ca.VerifyPeer(ctx, &provider.VerifyRequest{Certificates: []*x509.Certificate{leaf.Certificate}, Usage: provider.UsageClientAuth}), "not yet known here")
	err = ca.Revoke(ctx, &provider.RevokeRequest{Serial: serial})
	assert.ErrorIs(t, err, provider.ErrAlreadyRevoked)
	assert.ErrorIs(t, ca.VerifyPeer(ctx, &provider.VerifyRequest{Certificates: []*x509.Certificate{leaf.Certificate}, Usage: provider.UsageClientAuth}), provider.ErrRevoked)

	// A revocation made here stays known even after a Refresh from a
	// store that (as a stale snapshot would) lacks it.
	other := issue(t, ca, &provider.IssueRequest{CommonName: "kvm2", Role: provider.RoleClient, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: other.Certificate.SerialNumber}))
	require.NoError(t, ca.Refresh(ctx))
	_, revoked := ca.IsRevoked(other.Certificate.SerialNumber)
	assert.True(t, revoked)
}

func TestReviewEdgeCases(t *testing.T) {
	ctx := context.Background()

	t.Run("expired CA issues nothing", func(t *testing.T) {
		clock := time.Now()
		ca, _ := newCACreate(t, &rootca.CreateOptions{Validity: 48 * time.Hour, Options: rootca.Options{Time: func() time.Time { return clock }}})
		clock = clock.Add(100 * 24 * time.Hour)
		_, err := ca.Issue(ctx, &provider.IssueRequest{CommonName: "kvm1", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
		assert.ErrorContains(t, err, "CA certificate expired")
	})
	t.Run("parent without certificate", func(t *testing.T) {
		_, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: genKey(t, "p256")}, Parent: &rootca.Issuer{}})
		assert.ErrorContains(t, err, "CreateOptions.Parent needs")
	})
	t.Run("encrypted key reopened with a signer only", func(t *testing.T) {
		store := rootca.NewMemStore()
		_, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: rootca.Options{Password: passwordFunc}})
		require.NoError(t, err)
		_, err = rootca.Open(ctx, store, &rootca.Options{Signer: genKey(t, "p256")})
		assert.ErrorContains(t, err, "Options.Password is needed")
	})
	t.Run("password asked once at first start", func(t *testing.T) {
		var calls atomic.Int32
		_, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Password: func() ([]byte, error) {
			calls.Add(1)
			return testPassword, nil
		}}})
		require.NoError(t, err)
		assert.Equal(t, int32(1), calls.Load())
	})
	t.Run("MaxValidity below the default validity", func(t *testing.T) {
		ca, _ := newCA(t, &rootca.Options{MaxValidity: 90 * 24 * time.Hour})
		res := issue(t, ca, &provider.IssueRequest{CommonName: "kvm1", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
		assert.WithinDuration(t, time.Now().Add(90*24*time.Hour), res.Certificate.NotAfter, time.Minute)
	})
	t.Run("serials no certificate can have", func(t *testing.T) {
		ca, _ := newCA(t, nil)
		huge := new(big.Int).Lsh(big.NewInt(1), 170)
		assert.ErrorIs(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: huge}), provider.ErrInvalidRequest)
		_, err := ca.LookupCertificate(ctx, big.NewInt(-5))
		assert.ErrorIs(t, err, provider.ErrInvalidRequest)
		_, err = ca.Renew(ctx, &provider.RenewRequest{Certificate: &x509.Certificate{}})
		assert.ErrorIs(t, err, provider.ErrInvalidRequest)
	})
}
