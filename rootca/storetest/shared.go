package storetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// PropagationLimit is how soon a revocation made through one CA must be
// refused by another CA sharing its store, in the Shared/Propagation
// subtest.
const PropagationLimit = time.Second

// runShared runs the subtests of two stores on one database, when
// opts.Reopen is set.
func runShared(t *testing.T, newStore func(t *testing.T) rootca.Store, opts *Options) {
	tests := []struct {
		name string
		run  func(t *testing.T, a, b rootca.Store)
	}{
		{"Shared/Authority", testSharedAuthority},
		{"Shared/Serials", testSharedSerials},
		{"Shared/CRLNumbers", testSharedCRLNumbers},
		{"Shared/Revocations", testSharedRevocations},
		{"Shared/Propagation", testSharedPropagation},
		{"Shared/Rotation", testSharedRotation},
		{"Shared/RotationLease", testSharedLease},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if opts.Reopen == nil {
				t.Skip("storetest.Options.Reopen is not set")
			}
			a := newStore(t)
			require.NotNil(t, a, "newStore returned nil")
			t.Cleanup(func() { assert.NoError(t, a.Close(), "Close") })
			b := opts.Reopen(t, a)
			require.NotNil(t, b, "Reopen returned nil")
			t.Cleanup(func() { assert.NoError(t, b.Close(), "Close") })
			tc.run(t, a, b)
		})
	}
}

func testSharedAuthority(t *testing.T, a, b rootca.Store) {
	require.NoError(t, a.CreateAuthority(t.Context(), testAuthority()))
	got, err := b.LoadAuthority(t.Context())
	require.NoError(t, err, "the other store sees the CA")
	assert.Equal(t, testAuthority().Certificates, got.Certificates)
	assert.ErrorIs(t, b.CreateAuthority(t.Context(), testAuthority()), rootca.ErrAuthorityExists,
		"the other store cannot create a second CA")
}

// testSharedSerials has every worker add the same serials, alternating
// between the stores: each serial is recorded exactly once.
func testSharedSerials(t *testing.T, a, b rootca.Store) {
	const serials = 24
	wins := make([][]int, workers)
	startTogether(func(w int) {
		for i := range serials {
			s := []rootca.Store{a, b}[(w+i)%2]
			err := s.AddCertificate(t.Context(), record(serial(int64(0x500+i)), base))
			switch {
			case err == nil:
				wins[w] = append(wins[w], i)
			case !errors.Is(err, rootca.ErrDuplicateSerial):
				assert.NoError(t, err, describe(w, i))
			}
		}
	})
	count := make(map[int]int)
	for _, ws := range wins {
		for _, i := range ws {
			count[i]++
		}
	}
	for i := range serials {
		assert.Equal(t, 1, count[i], "serial %#x recorded %d times", 0x500+i, count[i])
	}
	list, err := b.ListCertificates(t.Context(), nil)
	require.NoError(t, err)
	assert.Len(t, list, serials)
}

// testSharedCRLNumbers draws CRL numbers from both stores at once: all
// differ, and each caller's increase.
func testSharedCRLNumbers(t *testing.T, a, b rootca.Store) {
	const perWorker = 12
	got := make([][]int64, workers)
	startTogether(func(w int) {
		for i := range perWorker {
			n, err := []rootca.Store{a, b}[(w+i)%2].NextCRLNumber(t.Context())
			if !assert.NoError(t, err, describe(w, i)) {
				return
			}
			got[w] = append(got[w], n.Int64())
		}
	})
	seen := map[int64]bool{}
	for w, ns := range got {
		for i, n := range ns {
			assert.False(t, seen[n], "CRL number %d handed out twice", n)
			seen[n] = true
			if i > 0 {
				assert.Greater(t, n, ns[i-1], "worker %d: CRL numbers increase", w)
			}
		}
	}
	assert.Len(t, seen, workers*perWorker)
}

func testSharedRevocations(t *testing.T, a, b rootca.Store) {
	rec := record(serial(0x600), base)
	addAll(t, a, rec)
	got, err := b.Certificate(t.Context(), rec.Serial)
	require.NoError(t, err, "the other store sees the certificate")
	assertRecord(t, rec, got)

	revoke(t, a, rec.Serial)
	_, err = b.Revoke(t.Context(), rec.Serial, provider.ReasonSuperseded, base)
	assert.ErrorIs(t, err, provider.ErrAlreadyRevoked, "revoked through the other store")
	revs, err := b.Revocations(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []int64{0x600}, feedSerials(revs))
	if feed, ok := b.(rootca.RevocationFeed); ok {
		revs, _, err := feed.RevocationsSince(t.Context(), 0)
		require.NoError(t, err)
		assert.Equal(t, []int64{0x600}, feedSerials(revs))
	}
}

// testSharedPropagation creates a CA through one store and opens it through
// the other, as two management
// servers do, and checks that a certificate revoked through either is
// refused by the other within PropagationLimit, without Refresh.
func testSharedPropagation(t *testing.T, a, b rootca.Store) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca, err := rootca.Create(t.Context(), a, &rootca.CreateOptions{Options: rootca.Options{Signer: key}})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, ca.Close()) })
	other, err := rootca.Open(t.Context(), b, &rootca.Options{Signer: key})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, other.Close()) })
	cas := []*rootca.CA{ca, other}
	for from, to := range []int{1, 0} {
		res, err := cas[from].Issue(t.Context(), hostRequest(t, key))
		require.NoError(t, err)
		serial := res.Certificate.SerialNumber
		_, revoked := cas[to].IsRevoked(serial)
		require.False(t, revoked)

		start := time.Now()
		require.NoError(t, cas[from].Revoke(t.Context(), &provider.RevokeRequest{Serial: serial, Reason: provider.ReasonKeyCompromise}))
		for {
			if _, revoked := cas[to].IsRevoked(serial); revoked {
				break
			}
			if time.Since(start) > 3*PropagationLimit {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(start)
		_, revoked = cas[to].IsRevoked(serial)
		require.True(t, revoked, "CA %d never learnt of the revocation made through CA %d", to, from)
		assert.LessOrEqual(t, took, PropagationLimit, "CA %d learnt of the revocation made through CA %d", to, from)
		t.Logf("revocation through CA %d refused by CA %d after %v", from, to, took.Round(time.Millisecond))

		err = cas[to].VerifyPeer(t.Context(), &provider.VerifyRequest{Certificates: []*x509.Certificate{res.Certificate}, Usage: provider.UsageClientAuth})
		assert.ErrorIs(t, err, provider.ErrRevoked, "CA %d refuses the certificate at a handshake", to)
	}
}

// hostRequest returns a request for a host certificate from a CSR.
func hostRequest(t *testing.T, key crypto.Signer) *provider.IssueRequest {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "kvm.example.org"}}, key)
	require.NoError(t, err)
	n, err := rand.Int(rand.Reader, big.NewInt(1<<30))
	require.NoError(t, err)
	return &provider.IssueRequest{
		CSR:      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		DNSNames: []string{"kvm-" + n.String() + ".example.org"},
		Role:     provider.RoleHost,
	}
}
