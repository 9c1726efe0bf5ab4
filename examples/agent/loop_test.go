package main

import (
	"context"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

// startAgent runs a's loop until the end of the test.
func startAgent(t *testing.T, a *agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("the agent's loop did not end with its context")
		}
	})
}

// TestAgentEnrollsAndRenews runs the agent's loop against a real agent
// port of a ca.Manager: with a bootstrap certificate it connects, asks to
// be provisioned, is provisioned in-band, removes the bootstrap files and
// reconnects with its new certificate; a renewal over the live connection
// makes it reconnect with the next one; once its certificate is revoked
// and its connection closed, its next handshake is refused.
func TestAgentEnrollsAndRenews(t *testing.T) {
	m := newManager(t, ca.Settings{}, 0)
	srv := startServer(t, m)
	a, log := newTestAgent(t, srv.addr)
	a.maxBackoff = time.Second
	boot := issueBootstrap(t, m, "kvm1", time.Hour)
	boot.write(t, a.bootstrap)
	bootSerial := provider.FormatSerial(boot.serial)
	startAgent(t, a)

	// Enrolment.
	first, i := log.waitFor(t, 0, 10*time.Second, "connected with the bootstrap certificate", is(evConnected))
	assert.True(t, first.Bootstrap)
	assert.Equal(t, bootSerial, first.Serial)
	assert.Equal(t, srv.addr, first.Server)
	var res *ca.ProvisionResult
	select {
	case res = <-srv.results:
		require.NotNil(t, res, "the server failed to provision the agent")
	case <-time.After(20 * time.Second):
		require.FailNow(t, "the server did not provision the agent", "%+v", log.all())
	}
	newSerial := provider.FormatSerial(res.Certificate.SerialNumber)
	require.NotEqual(t, bootSerial, newSerial)
	prov, _ := log.waitFor(t, i, 10*time.Second, "provisioned", is(evProvisioned))
	assert.Equal(t, newSerial, prov.Serial)
	reloaded, j := log.waitFor(t, i, 10*time.Second, "reloaded", is(evReloaded))
	second, j := log.waitFor(t, j, 10*time.Second, "connected with the new certificate", is(evConnected))
	assert.False(t, second.Bootstrap)
	assert.Equal(t, newSerial, second.Serial)
	t.Logf("enrolment: bootstrap handshake to reconnected with serial %s: %v (reload answered to handshake: %v)",
		newSerial, second.Time.Sub(first.Time), second.Time.Sub(reloaded.Time))
	for _, suffix := range []string{".crt", ".key", ".ca.crt"} {
		assert.NoFileExists(t, a.bootstrap+suffix)
	}
	assert.True(t, crlLists(t, m, boot.serial), "the bootstrap certificate is revoked")
	for _, ev := range log.all()[:j] {
		assert.NotContains(t, []string{evDisconnected, evRefused, evUnreachable}, ev.Event, "%+v", ev)
	}

	// Renewal over the live connection, as the background task does.
	var sess *ca.AgentSession
	require.Eventually(t, func() bool { sess = srv.session(newSerial); return sess != nil }, 5*time.Second, 10*time.Millisecond)
	renewed, err := m.Provision(t.Context(), &ca.ProvisionRequest{Name: "kvm1", Host: ca.NewAgentHost(sess), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}})
	require.NoError(t, err)
	assert.True(t, renewed.Reloaded)
	renewedSerial := provider.FormatSerial(renewed.Certificate.SerialNumber)
	reloaded, k := log.waitFor(t, j+1, 10*time.Second, "reloaded after renewal", is(evReloaded))
	assert.Equal(t, renewedSerial, reloaded.Serial)
	third, k := log.waitFor(t, k, 10*time.Second, "connected with the renewed certificate", is(evConnected))
	assert.Equal(t, renewedSerial, third.Serial)
	t.Logf("renewal: reload answered to connected again: %v", third.Time.Sub(reloaded.Time))

	// Revocation: the server closes the connection; the next handshake
	// is refused.
	require.Eventually(t, func() bool { sess = srv.session(renewedSerial); return sess != nil }, 5*time.Second, 10*time.Millisecond)
	t0 := time.Now()
	require.NoError(t, m.Revoke(t.Context(), &ca.RevokeRequest{Serial: renewedSerial}))
	sess.Close()
	refused, r := log.waitFor(t, k, 5*time.Second, "refused after revocation", is(evRefused))
	for _, ev := range log.all()[k+1 : r] {
		assert.NotEqual(t, evConnected, ev.Event, "a refused connection is never reported connected: %+v", ev)
	}
	assert.Equal(t, renewedSerial, refused.Serial)
	assert.Contains(t, refused.Error, "remote error: tls:")
	assert.Less(t, refused.Seen.Sub(t0), time.Second)
	t.Logf("revocation to refusal: %v", refused.Seen.Sub(t0))

	// Re-enrolment without a restart: an administrator puts a new
	// bootstrap credential in place; at its next refusal the agent takes
	// it and is provisioned again.
	again := issueBootstrap(t, m, "kvm1", time.Hour)
	again.write(t, a.bootstrap)
	rejoined, r := log.waitFor(t, r, 10*time.Second, "connected with the new bootstrap certificate",
		func(ev seenEvent) bool { return ev.Event == evConnected && ev.Bootstrap })
	assert.Equal(t, provider.FormatSerial(again.serial), rejoined.Serial)
	prov, r = log.waitFor(t, r, 10*time.Second, "provisioned again", is(evProvisioned))
	back, _ := log.waitFor(t, r, 10*time.Second, "connected after re-enrolment", is(evConnected))
	assert.False(t, back.Bootstrap)
	assert.Equal(t, prov.Serial, back.Serial)
	assert.NotContains(t, []string{bootSerial, newSerial, renewedSerial}, back.Serial)
	assert.NoFileExists(t, a.bootstrap+".key")
}

// TestAgentRetriesUnreachable: with no server listening the agent
// reports each failed round and keeps trying, backing off, until a
// server appears.
func TestAgentRetriesUnreachable(t *testing.T) {
	m := newManager(t, ca.Settings{}, 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	a, log := newTestAgent(t, addr)
	a.maxBackoff = 400 * time.Millisecond
	provision(t, a, m)
	startAgent(t, a)
	_, i := log.waitFor(t, 0, 10*time.Second, "unreachable", is(evUnreachable))
	_, _ = log.waitFor(t, i+1, 10*time.Second, "unreachable again", is(evUnreachable))
	// A secured agent never asks to be provisioned, and never connects
	// to a server it could not verify.
	for _, ev := range log.all() {
		assert.NotEqual(t, evConnected, ev.Event)
	}
}

// crlLists reports whether the manager's CRL lists serial.
func crlLists(t *testing.T, m *ca.Manager, serial *big.Int) bool {
	t.Helper()
	rec := httptest.NewRecorder()
	m.CRLHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/crl", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return revoked(t, rec.Body.Bytes(), serial)
}

// TestAgentVerifiesServer: the agent never talks to a server whose chain
// does not verify against its CA file, or whose certificate does not name
// the address as listed; it reports the server unreachable and keeps
// trying.
func TestAgentVerifiesServer(t *testing.T) {
	m := newManager(t, ca.Settings{}, 0)
	other := newManager(t, ca.Settings{}, 0)
	srv := startServer(t, m)
	_, port, err := net.SplitHostPort(srv.addr)
	require.NoError(t, err)
	tests := []struct {
		name    string
		servers string
		issuer  *ca.Manager
		want    string
	}{
		{name: "another CA", servers: srv.addr, issuer: other, want: "certificate signed by unknown authority"},
		{name: "another name", servers: net.JoinHostPort("localhost", port), issuer: m, want: "localhost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, log := newTestAgent(t, tc.servers)
			a.maxBackoff = 400 * time.Millisecond
			provision(t, a, tc.issuer)
			n := len(log.all())
			startAgent(t, a)
			ev, i := log.waitFor(t, n, 10*time.Second, "unreachable", is(evUnreachable))
			assert.Contains(t, ev.Error, tc.want)
			_, _ = log.waitFor(t, i+1, 10*time.Second, "unreachable again", is(evUnreachable))
			for _, ev := range log.all()[n:] {
				assert.NotContains(t, []string{evConnected, evCommand}, ev.Event, "%+v", ev)
			}
		})
	}
}

// TestAgentUsesServerList: with a server of its list down, the agent
// connects through another one in the same round, without reporting the
// list unreachable.
func TestAgentUsesServerList(t *testing.T) {
	m := newManager(t, ca.Settings{}, 0)
	srv := startServer(t, m)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := ln.Addr().String()
	require.NoError(t, ln.Close())
	a, log := newTestAgent(t, down+","+srv.addr)
	provision(t, a, m)
	n := len(log.all())
	startAgent(t, a)
	ev, i := log.waitFor(t, n, 10*time.Second, "connected", is(evConnected))
	assert.Equal(t, srv.addr, ev.Server)
	for _, ev := range log.all()[n:i] {
		assert.NotEqual(t, evUnreachable, ev.Event, "%+v", ev)
	}
}
