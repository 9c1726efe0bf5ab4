package rootca_test

import (
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// verifyClient is a VerifyPeer request for a client certificate.
func verifyClient(c *x509.Certificate) *provider.VerifyRequest {
	return &provider.VerifyRequest{Certificates: []*x509.Certificate{c}, Usage: provider.UsageClientAuth}
}

// hostLeaf issues a host certificate for name from a new P-256 key.
func hostLeaf(t *testing.T, ca *rootca.CA, name string) *provider.IssueResult {
	t.Helper()
	key := genKey(t, "p256")
	return issue(t, ca, &provider.IssueRequest{CSR: makeCSR(t, key, name, nil, nil), DNSNames: []string{name}, Role: provider.RoleHost})
}

// crlSerials returns the serials a CRL lists.
func crlSerials(crl *x509.RevocationList) []string {
	var out []string
	for _, e := range crl.RevokedCertificateEntries {
		out = append(out, provider.FormatSerial(e.SerialNumber))
	}
	return out
}

// TestRotation walks a CA through a rotation on the memory and SQLite
// stores: during the overlap the bundle holds the successor then the old
// CA, the successor issues (Issue and Renew), VerifyPeer accepts the
// leaves of both, revocation works for both, and SignCRLs signs one CRL
// per CA; a second rotation is refused; a CA opened again on the store (a
// restart) sees the same state; RetirePrevious refuses while an old leaf
// is live, then either succeeds once it is revoked or, forced, abandons
// it; after retirement the old CA's leaves are refused, the bundle and
// the CRLs are the successor's alone.
func TestRotation(t *testing.T) {
	t.Cleanup(rootca.SetKeyIterations(minTestKeyIterations))
	tests := []struct {
		name  string
		force bool // retire by force instead of revoking the live old leaf
	}{
		{"revoke then retire", false},
		{"forced retirement", true},
	}
	for _, b := range backends[:2] {
		for _, tc := range tests {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) {
				ctx := t.Context()
				ss := newStores(b)
				store := ss.new(t)
				t.Cleanup(func() { store.Close() })
				opts := rootca.Options{Password: passwordFunc, RevocationPollInterval: -1}
				ca, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: opts})
				require.NoError(t, err)
				t.Cleanup(func() { ca.Close() })
				old := ca.Certificate()
				oldLive := hostLeaf(t, ca, "live.example.org")
				oldRevoked := hostLeaf(t, ca, "revoked.example.org")

				_, err = ca.RetirePrevious(ctx, nil)
				assert.ErrorIs(t, err, rootca.ErrNotRetirable, "no rotation to end")

				succ, err := ca.BeginRotation(ctx, nil)
				require.NoError(t, err)
				assert.Equal(t, "kvmpki root CA G2", succ.Subject.CommonName)
				assert.True(t, ca.Certificate().Equal(succ))
				_, err = ca.BeginRotation(ctx, nil)
				assert.ErrorIs(t, err, rootca.ErrRotationInProgress, "a second rotation during the first")

				bundle, err := ca.CACertificates(ctx)
				require.NoError(t, err)
				require.Len(t, bundle, 2)
				assert.True(t, bundle[0].Equal(succ), "the issuing CA first")
				assert.True(t, bundle[1].Equal(old), "then the previous CA")

				fresh := hostLeaf(t, ca, "new.example.org")
				assert.NoError(t, fresh.Certificate.CheckSignatureFrom(succ), "the successor issues")
				assert.True(t, fresh.Chain[0].Equal(succ), "the chain is the successor's")
				renewed, err := ca.Renew(ctx, &provider.RenewRequest{Certificate: oldRevoked.Certificate})
				require.NoError(t, err)
				assert.NoError(t, renewed.Certificate.CheckSignatureFrom(succ), "renewal of an old leaf comes from the successor")
				for _, c := range []*x509.Certificate{oldLive.Certificate, oldRevoked.Certificate, fresh.Certificate} {
					assert.NoError(t, ca.VerifyPeer(ctx, verifyClient(c)), "accepted during the overlap: %s", c.Subject)
				}

				require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: oldRevoked.Certificate.SerialNumber, Reason: provider.ReasonSuperseded}))
				require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: renewed.Certificate.SerialNumber, Reason: provider.ReasonKeyCompromise}))
				assert.ErrorIs(t, ca.VerifyPeer(ctx, verifyClient(oldRevoked.Certificate)), provider.ErrRevoked, "old CA's revoked leaf")
				assert.ErrorIs(t, ca.VerifyPeer(ctx, verifyClient(renewed.Certificate)), provider.ErrRevoked, "successor's revoked leaf")

				crls, err := provider.CRLs(ctx, ca)
				require.NoError(t, err)
				require.Len(t, crls, 2, "one CRL per trusted CA")
				assert.NoError(t, crls[0].CheckSignatureFrom(succ), "the issuing CA's CRL first")
				assert.NoError(t, crls[1].CheckSignatureFrom(old), "then the previous CA's")
				for _, crl := range crls {
					assert.Contains(t, crlSerials(crl), provider.FormatSerial(oldRevoked.Certificate.SerialNumber))
					assert.Contains(t, crlSerials(crl), provider.FormatSerial(renewed.Certificate.SerialNumber))
				}
				assert.Positive(t, crls[1].Number.Cmp(crls[0].Number), "CRL numbers keep increasing")
				one, err := ca.SignCRL(ctx)
				require.NoError(t, err)
				assert.NoError(t, one.CheckSignatureFrom(succ), "SignCRL signs with the issuing CA")

				// A restart: a CA opened on the store again.
				other := store
				if b.open != nil {
					other = ss.reopen(t, store)
					t.Cleanup(func() { other.Close() })
				}
				again, err := rootca.Open(ctx, other, &opts)
				require.NoError(t, err)
				t.Cleanup(func() { again.Close() })
				assert.True(t, again.Certificate().Equal(succ), "the rotation survives a restart")
				rebundle, err := again.CACertificates(ctx)
				require.NoError(t, err)
				assert.Equal(t, bundle, rebundle)
				assert.ErrorIs(t, again.VerifyPeer(ctx, verifyClient(oldRevoked.Certificate)), provider.ErrRevoked)

				status, err := again.RotationStatus(ctx)
				require.NoError(t, err)
				require.Len(t, status, 2)
				assert.Equal(t, 1, status[0].Leaves, "the old CA's live leaf")
				assert.False(t, status[0].Issuing)
				assert.True(t, status[1].Issuing)
				assert.Equal(t, 1, status[1].Leaves, "the successor's live leaf")

				_, err = ca.RetirePrevious(ctx, nil)
				var remain *rootca.RemainingLeavesError
				require.ErrorAs(t, err, &remain)
				assert.ErrorIs(t, err, rootca.ErrLeavesRemain)
				assert.Equal(t, 1, remain.Generation)
				assert.Equal(t, []*big.Int{oldLive.Certificate.SerialNumber}, remain.Serials)
				assert.NoError(t, ca.VerifyPeer(ctx, verifyClient(oldLive.Certificate)), "a refused retirement changes nothing")

				var res *rootca.RetireResult
				if tc.force {
					res, err = ca.RetirePrevious(ctx, &rootca.RetireOptions{Force: true})
					require.NoError(t, err)
					assert.Equal(t, []*big.Int{oldLive.Certificate.SerialNumber}, res.Abandoned)
				} else {
					require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: oldLive.Certificate.SerialNumber, Reason: provider.ReasonSuperseded}))
					res, err = ca.RetirePrevious(ctx, nil)
					require.NoError(t, err)
					assert.Empty(t, res.Abandoned)
				}
				require.Len(t, res.Retired, 1)
				assert.True(t, res.Retired[0].Equal(old))

				require.NoError(t, again.Refresh(ctx))
				for name, c := range map[string]*rootca.CA{"retiring CA": ca, "restarted CA": again} {
					err := c.VerifyPeer(ctx, verifyClient(oldLive.Certificate))
					assert.ErrorIs(t, err, provider.ErrUnknownAuthority, "%s: the retired CA's leaf", name)
					assert.NoError(t, c.VerifyPeer(ctx, verifyClient(fresh.Certificate)), "%s: the successor's leaf", name)
					bundle, err := c.CACertificates(ctx)
					require.NoError(t, err)
					if assert.Len(t, bundle, 1, name) {
						assert.True(t, bundle[0].Equal(succ))
					}
					crls, err := c.CRLs(ctx)
					require.NoError(t, err)
					if assert.Len(t, crls, 1, "%s: no CRL for the retired CA", name) {
						assert.NoError(t, crls[0].CheckSignatureFrom(succ))
					}
				}
				_, err = ca.RetirePrevious(ctx, nil)
				assert.ErrorIs(t, err, rootca.ErrNotRetirable, "nothing left to retire")

				// The next rotation may begin.
				g3, err := again.BeginRotation(ctx, nil)
				require.NoError(t, err)
				assert.Equal(t, "kvmpki root CA G3", g3.Subject.CommonName)
			})
		}
	}
}

// TestRotationUnsupported checks the refusals of a store that keeps one
// CA and of a CA whose key is held outside the store.
func TestRotationUnsupported(t *testing.T) {
	ca, _ := newCA(t, nil) // an external Signer
	_, err := ca.BeginRotation(t.Context(), nil)
	assert.ErrorIs(t, err, errors.ErrUnsupported, "external signer")
	both, _ := newCA(t, &rootca.Options{Signer: genKey(t, "p256"), Password: passwordFunc})
	_, err = both.BeginRotation(t.Context(), nil)
	assert.ErrorIs(t, err, errors.ErrUnsupported, "external signer, with a password too")

	key := genKey(t, "p256")
	single := oneCAStore{rootca.NewMemStore()}
	ca2, err := rootca.Create(t.Context(), single, &rootca.CreateOptions{Options: rootca.Options{Signer: key}})
	require.NoError(t, err)
	t.Cleanup(func() { ca2.Close() })
	_, err = ca2.BeginRotation(t.Context(), nil)
	assert.ErrorIs(t, err, errors.ErrUnsupported, "store without generations")
	_, err = ca2.RetirePrevious(t.Context(), nil)
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	status, err := ca2.RotationStatus(t.Context())
	require.NoError(t, err)
	require.Len(t, status, 1)
	assert.True(t, status[0].Issuing)
	assert.True(t, status[0].Certificate.Equal(ca2.Certificate()))
}

// oneCAStore hides MemStore's RotationStore methods: a store of one CA.
type oneCAStore struct{ rootca.Store }

// noLeaseStore hides MemStore's RotationLeaseStore methods: a store of
// generations without a rotation lease.
type noLeaseStore struct{ rootca.RotationStore }

// TestRotationLease checks the CA's provider.RotationLeaser methods on a
// MemStore: a claim for a duration of the CA's clock (Options.Time), the
// busy error naming the holder and that expiry, PushPending and the
// lease in CARotationStatus, release; a lease expires with the CA's
// clock; a duration that is not positive is refused; on a store without
// a lease every method matches errors.ErrUnsupported.
func TestRotationLease(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	clock := func() time.Time { return now }
	ca, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: genKey(t, "p256"), Time: clock}})
	require.NoError(t, err)
	t.Cleanup(func() { ca.Close() })

	require.NoError(t, ca.ClaimCARotation(ctx, "server-a", time.Minute))
	err = ca.ClaimCARotation(ctx, "server-b", time.Minute)
	var busy *provider.RotationBusyError
	require.ErrorAs(t, err, &busy)
	assert.ErrorIs(t, err, rootca.ErrRotationBusy)
	assert.Equal(t, "server-a", busy.Holder)
	assert.True(t, now.Add(time.Minute).Equal(busy.Until), "until the CA's clock plus the duration")
	require.NoError(t, ca.SetCARotationPushPending(ctx, "server-a", true))
	st, err := ca.CARotationStatus(ctx)
	require.NoError(t, err)
	assert.True(t, st.PushPending)
	require.NotNil(t, st.Lease)
	assert.Equal(t, provider.RotationLease{Holder: "server-a", Until: now.Add(time.Minute)}, *st.Lease)

	now = now.Add(2 * time.Minute) // server-a's lease expires
	assert.ErrorIs(t, ca.SetCARotationPushPending(ctx, "server-a", false), provider.ErrRotationBusy, "under an expired lease")
	require.NoError(t, ca.ClaimCARotation(ctx, "server-b", time.Minute), "takeover of an expired lease")
	require.NoError(t, ca.ReleaseCARotation(ctx, "server-b"))
	st, err = ca.CARotationStatus(ctx)
	require.NoError(t, err)
	assert.Nil(t, st.Lease)
	assert.True(t, st.PushPending, "a release keeps PushPending")
	for _, ttl := range []time.Duration{0, -time.Second} {
		err := ca.ClaimCARotation(ctx, "server-c", ttl)
		require.Error(t, err, "duration %v", ttl)
		assert.NotErrorIs(t, err, provider.ErrRotationBusy)
	}

	plain, err := rootca.Create(ctx, noLeaseStore{rootca.NewMemStore()}, &rootca.CreateOptions{Options: rootca.Options{Signer: genKey(t, "p256")}})
	require.NoError(t, err)
	t.Cleanup(func() { plain.Close() })
	assert.ErrorIs(t, plain.ClaimCARotation(ctx, "server-a", time.Minute), errors.ErrUnsupported)
	assert.ErrorIs(t, plain.ReleaseCARotation(ctx, "server-a"), errors.ErrUnsupported)
	assert.ErrorIs(t, plain.SetCARotationPushPending(ctx, "server-a", true), errors.ErrUnsupported)
	st, err = plain.CARotationStatus(ctx)
	require.NoError(t, err)
	assert.Nil(t, st.Lease)
	assert.False(t, st.PushPending)
}
