package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/internal/pemx"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// nopClose keeps the shared CA open when the manager closes its handle.
type nopClose struct{ *rootca.CA }

func (nopClose) Close() error { return nil }

// newManager returns a ca.Manager on an in-memory rootca whose clock runs
// offset from now (a negative offset issues certificates that have
// expired by now).
func newManager(t *testing.T, s ca.Settings, offset time.Duration) *ca.Manager {
	t.Helper()
	now := func() time.Time { return time.Now().Add(offset) }
	created, err := rootca.Create(t.Context(), rootca.NewMemStore(), &rootca.CreateOptions{
		Options: rootca.Options{
			Password:               func() ([]byte, error) { return []byte("test password only"), nil },
			Time:                   now,
			LeafKeyAlgorithm:       provider.KeyAlgorithmECDSA,
			RevocationPollInterval: -1,
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { created.Close() })
	reg := &provider.Registry{}
	require.NoError(t, reg.Register("root", "kvmpki built-in CA", func(context.Context) (provider.Provider, error) {
		return nopClose{created}, nil
	}))
	s.Time = now
	m, err := ca.New(t.Context(), reg, &s)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// credential is a certificate, its key and the CA bundle, PEM.
type credential struct {
	cert, key, bundle []byte
	serial            *big.Int
}

// issueBootstrap issues a certificate without a CSR, as the API's
// issueCertificate does for a bootstrap credential.
func issueBootstrap(t *testing.T, m *ca.Manager, name string, validity time.Duration) credential {
	t.Helper()
	res, err := m.Issue(t.Context(), &ca.IssueRequest{DNSNames: []string{name}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Validity: validity})
	require.NoError(t, err)
	key, err := res.KeyPEM()
	require.NoError(t, err)
	bundle, err := m.CABundle(t.Context())
	require.NoError(t, err)
	return credential{cert: provider.EncodeCertificates(res.Certificate), key: key, bundle: bundle, serial: res.Certificate.SerialNumber}
}

// write stores c as PREFIX.crt, PREFIX.key (0600) and PREFIX.ca.crt.
func (c credential) write(t *testing.T, prefix string) {
	t.Helper()
	require.NoError(t, os.WriteFile(prefix+".crt", c.cert, 0o644))
	require.NoError(t, os.WriteFile(prefix+".key", c.key, 0o600))
	require.NoError(t, os.WriteFile(prefix+".ca.crt", c.bundle, 0o644))
}

// seenEvent is one event line as a reader parses it.
type seenEvent struct {
	Time      time.Time `json:"time"`
	Event     string    `json:"event"`
	Server    string    `json:"server"`
	Serial    string    `json:"serial"`
	Bootstrap bool      `json:"bootstrap"`
	Command   string    `json:"command"`
	Error     string    `json:"error"`
	// Seen is when the reader got the line.
	Seen time.Time `json:"-"`
}

// eventLog collects an agent's event lines (an io.Writer), for tests to
// wait on.
type eventLog struct {
	t *testing.T

	mu      sync.Mutex
	partial []byte
	events  []seenEvent
	changed chan struct{}
}

func newEventLog(t *testing.T) *eventLog { return &eventLog{t: t, changed: make(chan struct{})} }

func (l *eventLog) Write(b []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		var ev seenEvent
		if err := json.Unmarshal(l.partial[:i], &ev); err != nil {
			l.t.Errorf("agent printed a line that is not an event: %q: %v", l.partial[:i], err)
		} else {
			ev.Seen = now
			l.events = append(l.events, ev)
		}
		l.partial = l.partial[i+1:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(b), nil
}

// all returns the events so far.
func (l *eventLog) all() []seenEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]seenEvent(nil), l.events...)
}

// waitFor waits until an event at index from or later matches match, and
// returns it and its index.
func (l *eventLog) waitFor(t *testing.T, from int, timeout time.Duration, what string, match func(seenEvent) bool) (seenEvent, int) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for i := from; i < len(l.events); i++ {
			if match(l.events[i]) {
				ev := l.events[i]
				l.mu.Unlock()
				return ev, i
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			require.FailNow(t, "timed out waiting for an event", "%s; events so far: %+v", what, l.all())
		}
	}
}

// is matches an event by name.
func is(name string) func(seenEvent) bool {
	return func(ev seenEvent) bool { return ev.Event == name }
}

// serialOfPEM is the serial of the first certificate of a PEM file.
func serialOfPEM(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	certs, err := pemx.ParseCertificates(data)
	require.NoError(t, err)
	require.NotEmpty(t, certs)
	return provider.FormatSerial(certs[0].SerialNumber)
}

// testServer is a management server's agent port in miniature, on a
// real ca.Manager: it provisions every agent that asks, over its own
// connection, then revokes the certificate the agent connected with.
type testServer struct {
	m    *ca.Manager
	addr string

	mu       sync.Mutex
	sessions map[string]*ca.AgentSession // by the agent's serial
	results  chan *ca.ProvisionResult
}

func startServer(t *testing.T, m *ca.Manager) *testServer {
	t.Helper()
	id, err := m.NewIdentity(t.Context(), &ca.IdentityOptions{Hostname: "ms1.example.org", Addresses: []net.IP{net.ParseIP("127.0.0.1")}})
	require.NoError(t, err)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err := m.NewAgentListener(inner, &ca.AgentServerConfig{Identity: id})
	require.NoError(t, err)
	s := &testServer{m: m, addr: inner.Addr().String(), sessions: map[string]*ca.AgentSession{}, results: make(chan *ca.ProvisionResult, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		ln.Close()
		s.mu.Lock()
		for _, sess := range s.sessions {
			sess.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(ctx, conn.(*ca.AgentConn))
			}()
		}
	}()
	return s
}

func (s *testServer) serve(ctx context.Context, conn *ca.AgentConn) {
	sess, err := ca.NewAgentSession(ctx, conn, nil)
	if err != nil {
		return // a refused handshake, or no hello
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	s.mu.Lock()
	s.sessions[provider.FormatSerial(leaf.SerialNumber)] = sess
	s.mu.Unlock()
	if sess.Hello().Provision {
		res, err := s.m.Provision(ctx, &ca.ProvisionRequest{
			Name: sess.Hello().HostID, Host: ca.NewAgentHost(sess), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		})
		if err == nil {
			err = s.m.Revoke(ctx, &ca.RevokeRequest{Certificate: leaf, Reason: provider.ReasonSuperseded})
		}
		if err != nil {
			res = nil
		}
		s.results <- res
	}
	<-sess.Done()
}

// session returns the live session of the agent connected with serial.
func (s *testServer) session(serial string) *ca.AgentSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[serial]
}

// revoked reports whether the manager's CRL lists serial.
func revoked(t *testing.T, crlDER []byte, serial *big.Int) bool {
	t.Helper()
	crl, err := x509.ParseRevocationList(crlDER)
	require.NoError(t, err)
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}
