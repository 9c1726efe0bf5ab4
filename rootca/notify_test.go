package rootca_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// receives reports whether ch delivers a notice within d.
func receives(ch <-chan struct{}, d time.Duration) bool {
	select {
	case _, ok := <-ch:
		return ok
	case <-time.After(d):
		return false
	}
}

// TestNotifyRevocations: the CA's own Revoke notifies every subscriber;
// notices coalesce, so a subscriber that does not read never blocks the
// CA; a cancelled context closes the channel.
func TestNotifyRevocations(t *testing.T) {
	ca, _ := newCA(t, &rootca.Options{RevocationPollInterval: -1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := provider.NotifyRevocations(ctx, ca)
	require.NoError(t, err)
	idle := ca.NotifyRevocations(ctx) // never read

	for range 3 {
		res := issue(t, ca, &provider.IssueRequest{DNSNames: []string{"h.example"}, Role: provider.RoleHost})
		done := make(chan error, 1)
		go func() { done <- ca.Revoke(ctx, &provider.RevokeRequest{Serial: res.Certificate.SerialNumber}) }()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Fatal("Revoke blocked on a subscriber that does not read")
		}
	}
	assert.True(t, receives(ch, time.Second), "no notice after Revoke")
	assert.False(t, receives(ch, 50*time.Millisecond), "three revocations before a read gave more than one notice")
	assert.Len(t, idle, 1, "the idle subscriber holds one pending notice")

	cancel()
	select {
	case _, ok := <-ch:
		assert.False(t, ok, "a notice instead of the close")
	case <-time.After(time.Second):
		t.Fatal("channel not closed after ctx was done")
	}

	t.Run("done context", func(t *testing.T) {
		ch := ca.NotifyRevocations(ctx)
		_, ok := <-ch
		assert.False(t, ok, "a subscription with a done ctx is closed at once")
	})
}

// TestNotifyRevocationsNoLeak: subscriptions hold no goroutine, and
// cancelled ones are released.
func TestNotifyRevocationsNoLeak(t *testing.T) {
	ca, _ := newCA(t, &rootca.Options{RevocationPollInterval: -1})
	before := runtime.NumGoroutine()
	for range 1000 {
		ctx, cancel := context.WithCancel(context.Background())
		_ = ca.NotifyRevocations(ctx)
		cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 100 {
		_ = ca.NotifyRevocations(ctx)
	}
	// Cancelled subscriptions are released by context.AfterFunc, in
	// goroutines that end at once; live ones hold none.
	require.Eventually(t, func() bool { return rootca.Subscribers(ca) == 100 }, time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, time.Second, time.Millisecond,
		"goroutines: %d before, %d after", before, runtime.NumGoroutine())
	cancel()
	require.Eventually(t, func() bool { return rootca.Subscribers(ca) == 0 }, time.Second, time.Millisecond)
}

// TestNotifyRevocationsShared: a revocation another CA makes through a
// shared store is notified once this CA learns of it, with the
// revocation already visible to IsRevoked.
func TestNotifyRevocationsShared(t *testing.T) {
	key := genKey(t, "p256")
	a, store := newCACreate(t, &rootca.CreateOptions{Options: rootca.Options{Signer: key, RevocationPollInterval: -1}})
	b, err := rootca.Open(context.Background(), sharedMemStore{store}, &rootca.Options{Signer: key, RevocationPollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	defer b.Close()
	ch := b.NotifyRevocations(t.Context())
	res := issue(t, a, &provider.IssueRequest{DNSNames: []string{"h.example"}, Role: provider.RoleHost})
	start := time.Now()
	require.NoError(t, a.Revoke(t.Context(), &provider.RevokeRequest{Serial: res.Certificate.SerialNumber}))
	require.True(t, receives(ch, 2*time.Second), "no notice of another CA's revocation")
	t.Logf("notice after %v", time.Since(start))
	_, revoked := b.IsRevoked(res.Certificate.SerialNumber)
	assert.True(t, revoked, "notified before the revocation was visible")
}

// TestNotifyRevocationsClose: closing the CA closes its subscriptions,
// and a subscription made after Close is closed at once.
func TestNotifyRevocationsClose(t *testing.T) {
	ca, _ := newCA(t, &rootca.Options{RevocationPollInterval: -1})
	ch := ca.NotifyRevocations(context.Background())
	require.NoError(t, ca.Close())
	for name, c := range map[string]<-chan struct{}{"before Close": ch, "after Close": ca.NotifyRevocations(context.Background())} {
		select {
		case _, ok := <-c:
			assert.False(t, ok, "%s: a notice instead of the close", name)
		case <-time.After(time.Second):
			t.Fatalf("%s: channel still open after Close", name)
		}
	}
	assert.Zero(t, rootca.Subscribers(ca))
}
