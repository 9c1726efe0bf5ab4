package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// ActiveCertificate is an agent connected now (CloudStack's
// activeCertMap entry): its address and the certificate it presented.
type ActiveCertificate struct {
	RemoteAddr  net.Addr
	Certificate *x509.Certificate
	// Since is when the handshake completed.
	Since time.Time
}

// activeSet holds the connections whose handshake was verified and which
// are not closed yet.
type activeSet struct {
	mu    sync.Mutex
	conns map[*AgentConn]ActiveCertificate

	// sweeps counts the revocation sweeps (dropRevoked) begun. A
	// connection verified while one ran is not listed yet, and the sweep
	// misses it: one listed after a sweep began since it was accepted
	// is judged again.
	sweeps atomic.Uint64
}

func (s *activeSet) add(c *AgentConn, a ActiveCertificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[*AgentConn]ActiveCertificate{}
	}
	s.conns[c] = a
}

func (s *activeSet) remove(c *AgentConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// snapshot returns the connections listed now.
func (s *activeSet) snapshot() []*AgentConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*AgentConn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// dropRevoked closes the agent connections whose certificate the
// provider of h now reports revoked: those presenting serial, or every
// one when serial is nil (a revocation notice names no certificate).
// CloudStack lets a revoked agent stay connected until it reconnects;
// here its connection ends at once, and its next handshake is refused.
func (m *Manager) dropRevoked(ctx context.Context, h *handle, serial *big.Int) {
	m.active.sweeps.Add(1) // before the snapshot: see AgentConn.HandshakeContext
	for _, c := range m.active.snapshot() {
		_ = m.closeIfRevoked(ctx, h, c, serial)
	}
}

// closeIfRevoked closes c if the provider of h reports its certificate
// revoked (with a serial, only if c presents that one), and returns why.
func (m *Manager) closeIfRevoked(ctx context.Context, h *handle, c *AgentConn, serial *big.Int) error {
	chain := c.Conn.ConnectionState().PeerCertificates
	if len(chain) == 0 || (serial != nil && chain[0].SerialNumber.Cmp(serial) != 0) {
		return nil
	}
	// Judge it at a moment inside its validity: an expired certificate
	// admitted under InsecureAllowExpired is cut for its revocation, not
	// its age.
	err := h.verifyCerts(ctx, chain, provider.UsageClientAuth, "", clampInto(chain[0], m.s.now()))
	if !errors.Is(err, ErrRevoked) {
		return nil
	}
	m.s.logger.Warn("ca: agent connection closed: its certificate is revoked", "remote", addrString(c.RemoteAddr()),
		"subject", chain[0].Subject.String(), "serial", provider.FormatSerial(chain[0].SerialNumber))
	c.Close()
	return err
}

// ActiveCertificates returns the agents connected now through listeners
// made by [Manager.NewAgentListener], oldest first. An entry is added
// when a connection's handshake has been verified and removed when the
// connection is closed or a read finds it dead; a failed handshake, or a
// connection never read (whose handshake never ran), adds none.
//
// Expiry tracking does not rely on it: the background task reads the
// provider's inventory.
func (m *Manager) ActiveCertificates() []ActiveCertificate {
	m.active.mu.Lock()
	out := make([]ActiveCertificate, 0, len(m.active.conns))
	for _, a := range m.active.conns {
		out = append(out, a)
	}
	m.active.mu.Unlock()
	slices.SortFunc(out, func(a, b ActiveCertificate) int { return a.Since.Compare(b.Since) })
	return out
}

// AgentListener is the agent port's listener: it accepts TCP connections
// and returns them as *AgentConn running the agent port's TLS
// configuration.
type AgentListener struct {
	net.Listener
	m   *Manager
	cfg *tls.Config
}

// NewAgentListener wraps inner, a TCP listener, into the agent port:
// Accept returns *AgentConn values using
// [Manager.AgentServerTLSConfig](cfg), whose verified handshakes are
// listed by [Manager.ActiveCertificates] until they are closed.
func (m *Manager) NewAgentListener(inner net.Listener, cfg *AgentServerConfig) (*AgentListener, error) {
	tc, err := m.AgentServerTLSConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &AgentListener{Listener: inner, m: m, cfg: tc}, nil
}

// Accept waits for the next connection and returns it as an *AgentConn.
// The handshake runs on the first Read or Write, or on Handshake.
func (l *AgentListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &AgentConn{Conn: tls.Server(c, l.cfg), m: l.m, sweeps: l.m.active.sweeps.Load()}, nil
}

// AgentConn is one agent's connection on the agent port. It is tracked
// in [Manager.ActiveCertificates] from its verified handshake until
// Close.
type AgentConn struct {
	*tls.Conn
	m      *Manager
	sweeps uint64 // activeSet.sweeps when accepted

	mu         sync.Mutex
	registered bool // the handshake was verified and the agent listed
	closed     bool // closed or found dead: never listed again
}

// Handshake runs the TLS handshake, if it has not run yet.
func (c *AgentConn) Handshake() error { return c.HandshakeContext(context.Background()) }

// HandshakeContext runs the TLS handshake, if it has not run yet, and
// registers the verified agent. A certificate revoked meanwhile closes
// the connection, with an error matching ErrRevoked.
func (c *AgentConn) HandshakeContext(ctx context.Context) error {
	if err := c.Conn.HandshakeContext(ctx); err != nil {
		return err
	}
	if !c.register() {
		return nil
	}
	// Follow the provider's revocation notices from now on, so that a
	// revocation another management server makes closes this
	// connection too; and if a revocation sweep began since the
	// connection was accepted, it may have missed this one, verified
	// before it and listed after: judge it again.
	again := c.m.active.sweeps.Load() != c.sweeps
	var revoked error
	_ = c.m.with(func(h *handle) error {
		h.publisher()
		if again {
			revoked = c.m.closeIfRevoked(ctx, h, c, nil)
		}
		return nil
	})
	return revoked
}

// register lists the verified agent, once; it reports whether it did.
func (c *AgentConn) register() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.registered || c.closed {
		return false
	}
	cs := c.Conn.ConnectionState()
	var leaf *x509.Certificate
	if len(cs.PeerCertificates) > 0 {
		leaf = cs.PeerCertificates[0]
	}
	c.registered = true
	c.m.active.add(c, ActiveCertificate{RemoteAddr: c.RemoteAddr(), Certificate: leaf, Since: c.m.s.now()})
	return true
}

// Read reads after the handshake. A read that finds the connection dead
// (not a timeout) removes the agent from the active ones.
func (c *AgentConn) Read(b []byte) (int, error) {
	if err := c.HandshakeContext(context.Background()); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(b)
	if err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			c.unregister()
		}
	}
	return n, err
}

// Write writes after the handshake.
func (c *AgentConn) Write(b []byte) (int, error) {
	if err := c.HandshakeContext(context.Background()); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// Close closes the connection and removes the agent from the active
// ones.
func (c *AgentConn) Close() error {
	c.unregister()
	return c.Conn.Close()
}

func (c *AgentConn) unregister() {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A connection leaves the set once and never comes back.
	c.closed = true
	if c.registered {
		c.m.active.remove(c)
	}
}
