package storetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// withCapability runs f for stores that implement the optional
// interface S (rootca.RotationStore, rootca.RotationLeaseStore) and skips
// the others.
func withCapability[S any](f func(t *testing.T, s S)) func(t *testing.T, s rootca.Store) {
	return func(t *testing.T, s rootca.Store) {
		cs, ok := any(s).(S)
		if !ok {
			t.Skipf("store does not implement %v", reflect.TypeFor[S]())
		}
		f(t, cs)
	}
}

// rotationTest runs f for stores that implement rootca.RotationStore.
func rotationTest(f func(t *testing.T, s rootca.RotationStore)) func(t *testing.T, s rootca.Store) {
	return withCapability(f)
}

// generation returns generation n with placeholder DER and key.
func generation(n int) *rootca.Generation {
	return &rootca.Generation{Number: n, Authority: rootca.Authority{
		Certificates: [][]byte{[]byte("\x30\x82successor " + string(rune('0'+n))), []byte("\x30\x82its root")},
		Key:          []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nGENERATION KEY\n-----END ENCRYPTED PRIVATE KEY-----\n"),
	}}
}

// testRotationGenerations walks a store through two rotations: the
// generations round-trip, LoadAuthority returns the newest, a generation
// is refused while the previous one is not retired, and every change
// moves the stamp.
func testRotationGenerations(t *testing.T, s rootca.RotationStore) {
	ctx := t.Context()
	_, err := s.Generations(ctx)
	assert.ErrorIs(t, err, provider.ErrNotFound, "Generations of an empty store")
	assert.Error(t, s.AddGeneration(ctx, generation(2)), "AddGeneration on an empty store")

	require.NoError(t, s.CreateAuthority(ctx, testAuthority()))
	stamps := []int64{}
	stamp := func() {
		n, err := s.GenerationStamp(ctx)
		require.NoError(t, err)
		stamps = append(stamps, n)
	}
	stamp()
	gens, err := s.Generations(ctx)
	require.NoError(t, err)
	require.Len(t, gens, 1)
	assert.Equal(t, 1, gens[0].Number)
	assert.Equal(t, testAuthority().Certificates, gens[0].Certificates)
	assert.Equal(t, testAuthority().Key, gens[0].Key)
	assert.True(t, gens[0].RetiredAt.IsZero())

	assert.Error(t, s.AddGeneration(ctx, generation(1)), "generation 1 is CreateAuthority's")
	assert.ErrorIs(t, s.AddGeneration(ctx, generation(3)), rootca.ErrRotationInProgress, "a number that skips one")
	require.NoError(t, s.AddGeneration(ctx, generation(2)))
	stamp()
	a, err := s.LoadAuthority(ctx)
	require.NoError(t, err)
	assert.Equal(t, generation(2).Certificates, a.Certificates, "LoadAuthority returns the newest generation")
	assert.ErrorIs(t, s.AddGeneration(ctx, generation(3)), rootca.ErrRotationInProgress, "generation 1 is not retired")
	assert.ErrorIs(t, s.AddGeneration(ctx, generation(2)), rootca.ErrRotationInProgress, "generation 2 exists")

	assert.ErrorIs(t, s.RetireGeneration(ctx, 2, base), rootca.ErrNotRetirable, "the newest generation")
	assert.ErrorIs(t, s.RetireGeneration(ctx, 7, base), rootca.ErrNotRetirable, "an unknown generation")
	require.NoError(t, s.RetireGeneration(ctx, 1, base))
	stamp()
	assert.ErrorIs(t, s.RetireGeneration(ctx, 1, base), rootca.ErrNotRetirable, "a retired generation")
	require.NoError(t, s.AddGeneration(ctx, generation(3)))
	stamp()

	gens, err = s.Generations(ctx)
	require.NoError(t, err)
	require.Len(t, gens, 3)
	for i, g := range gens {
		assert.Equal(t, i+1, g.Number)
	}
	assertTime(t, base, gens[0].RetiredAt, "generation 1: RetiredAt")
	assert.True(t, gens[1].RetiredAt.IsZero(), "generation 2 is trusted")
	assert.Equal(t, generation(3).Certificates, gens[2].Certificates)
	assert.Equal(t, generation(3).Key, gens[2].Key)
	for i := 1; i < len(stamps); i++ {
		assert.NotEqual(t, stamps[i-1], stamps[i], "the stamp changes with every change of generations")
	}
}

// testRotationConcurrent has every worker add generation 2 at once:
// exactly one succeeds, the others get ErrRotationInProgress.
func testRotationConcurrent(t *testing.T, s rootca.RotationStore) {
	require.NoError(t, s.CreateAuthority(t.Context(), testAuthority()))
	var wins atomic.Int32
	startTogether(func(w int) {
		err := s.AddGeneration(t.Context(), generation(2))
		switch {
		case err == nil:
			wins.Add(1)
		case !errors.Is(err, rootca.ErrRotationInProgress):
			assert.NoError(t, err, "worker %d", w)
		}
	})
	assert.Equal(t, int32(1), wins.Load(), "generation 2 added exactly once")
	gens, err := s.Generations(t.Context())
	require.NoError(t, err)
	assert.Len(t, gens, 2)
}

// testSharedRotation creates a CA through one store and opens it through
// the other, as two management servers do; both begin a rotation at once:
// exactly one succeeds, and the other CA issues from the successor within
// PropagationLimit without Refresh. Retiring through one CA drops the
// previous CA from the other's trust within the same limit.
func testSharedRotation(t *testing.T, a, b rootca.Store) {
	if _, ok := a.(rootca.RotationStore); !ok {
		t.Skip("store does not implement rootca.RotationStore")
	}
	password := func() ([]byte, error) { return []byte("storetest rotation password"), nil }
	opts := rootca.Options{Password: password, RevocationPollInterval: 50 * time.Millisecond}
	first, err := rootca.Create(t.Context(), a, &rootca.CreateOptions{Options: opts})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, first.Close()) })
	second, err := rootca.Open(t.Context(), b, &opts)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, second.Close()) })
	cas := []*rootca.CA{first, second}
	old := first.Certificate()
	oldLeaf, err := first.Issue(t.Context(), hostRequest(t, mustKey(t)))
	require.NoError(t, err)

	var wins atomic.Int32
	var successor atomic.Pointer[x509.Certificate]
	startTogether(func(w int) {
		if w >= len(cas) {
			return
		}
		c, err := cas[w].BeginRotation(t.Context(), nil)
		switch {
		case err == nil:
			wins.Add(1)
			successor.Store(c)
		case !errors.Is(err, rootca.ErrRotationInProgress):
			assert.NoError(t, err, "CA %d", w)
		}
	})
	require.Equal(t, int32(1), wins.Load(), "exactly one CA begins the rotation")
	succ := successor.Load()
	begun := time.Now()
	for i, ca := range cas {
		waitFor(t, func() bool { return ca.Certificate().Equal(succ) }, "CA %d issues from the successor", i)
		t.Logf("CA %d issues from the successor %v after the rotation began", i, time.Since(begun).Round(time.Millisecond))
		bundle, err := ca.CACertificates(t.Context())
		require.NoError(t, err)
		if assert.Len(t, bundle, 2, "CA %d: bundle", i) {
			assert.True(t, bundle[0].Equal(succ), "CA %d: the successor comes first", i)
			assert.True(t, bundle[1].Equal(old), "CA %d: the previous CA follows", i)
		}
		assert.NoError(t, ca.VerifyPeer(t.Context(), clientRequest(oldLeaf.Certificate)), "CA %d accepts the previous CA's leaf", i)
	}
	newLeaf, err := second.Issue(t.Context(), hostRequest(t, mustKey(t)))
	require.NoError(t, err)
	assert.NoError(t, newLeaf.Certificate.CheckSignatureFrom(succ), "the successor signs new leaves")
	assert.NoError(t, first.VerifyPeer(t.Context(), clientRequest(newLeaf.Certificate)))

	_, err = second.RetirePrevious(t.Context(), nil)
	assert.ErrorIs(t, err, rootca.ErrLeavesRemain, "the previous CA's leaf is unexpired and unrevoked")
	res, err := second.RetirePrevious(t.Context(), &rootca.RetireOptions{Force: true})
	require.NoError(t, err)
	require.Len(t, res.Abandoned, 1)
	assert.Zero(t, res.Abandoned[0].Cmp(oldLeaf.Certificate.SerialNumber))
	retiredAt := time.Now()
	waitFor(t, func() bool {
		return errors.Is(first.VerifyPeer(t.Context(), clientRequest(oldLeaf.Certificate)), provider.ErrUnknownAuthority)
	}, "the other CA refuses the retired CA's leaf")
	t.Logf("the other CA refuses the retired CA's leaf %v after the retirement", time.Since(retiredAt).Round(time.Millisecond))
	bundle, err := first.CACertificates(t.Context())
	require.NoError(t, err)
	assert.Len(t, bundle, 1, "the retired CA has left the bundle")
	assert.NoError(t, first.VerifyPeer(t.Context(), clientRequest(newLeaf.Certificate)))
}

func clientRequest(c *x509.Certificate) *provider.VerifyRequest {
	return &provider.VerifyRequest{Certificates: []*x509.Certificate{c}, Usage: provider.UsageClientAuth}
}

// waitFor polls cond until it holds, failing the test if it does not
// within PropagationLimit.
func waitFor(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(PropagationLimit)
	for !cond() {
		if time.Now().After(deadline) {
			require.Failf(t, "not within the propagation limit", msg, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mustKey returns a new P-256 key for a CSR.
func mustKey(t *testing.T) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return key
}
