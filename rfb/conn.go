package rfb

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Conn is an RFB client connection after a successful handshake.
//
// One goroutine at a time may read (ReadMessage, Relay); client messages
// may be sent from any goroutine, each is written whole.
type Conn struct {
	raw    net.Conn      // the transport
	conn   net.Conn      // raw, or the TLS connection over it
	br     *bufio.Reader // reads from conn
	state  ConnectionState
	name   string
	limits struct{ maxPixels, maxCutText int }

	mu     sync.Mutex // guards width, height, pf and pfSet, shared by reader and senders
	width  int
	height int
	pf     PixelFormat
	pfSet  bool // the caller chose pf with SetPixelFormat

	closeOnce sync.Once
	dl        deadlines // the caller's deadlines on raw

	wsem chan struct{} // holds one token while a write is in progress
	wbuf []byte
	werr error // set by a failed write, which closed the connection

	// rerr is set when a read failed inside a message: the stream is out
	// of step, and every later ReadMessage returns it. Only the reader
	// touches it.
	rerr error

	// Reused by ReadMessage, so the steady state allocates nothing.
	update  FramebufferUpdate
	colours SetColourMapEntries
	scratch []byte
}

// ConnectionState describes how a connection is secured, from the
// handshake that was actually carried out. A UI shows it as its
// "encrypted" indicator.
type ConnectionState struct {
	// ProtocolVersion is the negotiated RFB version: "3.3", "3.7" or
	// "3.8".
	ProtocolVersion string
	// Security is the security type, or the VeNCrypt subtype when the
	// server offered VeNCrypt.
	Security Security
	// TLS is the state of the TLS connection for the VeNCrypt X509
	// subtypes, with the negotiated version and cipher suite and the
	// verified chains of the server certificate; nil when the session is
	// not encrypted.
	TLS *tls.ConnectionState
}

// Encrypted reports whether the session runs inside TLS with a verified
// server certificate.
func (s ConnectionState) Encrypted() bool {
	return s.TLS != nil && s.TLS.HandshakeComplete
}

// String summarises the state on one line, e.g. "RFB 3.8, VeNCrypt
// X509Vnc (261), TLS 1.3 TLS_AES_128_GCM_SHA256, server CN=kvm1 verified
// by CN=kvmpki root CA".
func (s ConnectionState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "RFB %s, %v", s.ProtocolVersion, s.Security)
	if s.TLS == nil {
		b.WriteString(", unencrypted")
		return b.String()
	}
	fmt.Fprintf(&b, ", %s %s", tls.VersionName(s.TLS.Version), tls.CipherSuiteName(s.TLS.CipherSuite))
	if len(s.TLS.PeerCertificates) > 0 {
		fmt.Fprintf(&b, ", server %s", s.TLS.PeerCertificates[0].Subject)
	}
	if len(s.TLS.VerifiedChains) > 0 {
		chain := s.TLS.VerifiedChains[0]
		fmt.Fprintf(&b, " verified by %s", chain[len(chain)-1].Subject)
	}
	return b.String()
}

func newConn(h *handshake, init ServerInit) *Conn {
	c := &Conn{
		raw:    h.raw,
		conn:   h.raw,
		name:   init.Name,
		width:  init.Width,
		height: init.Height,
		pf:     init.PixelFormat,
		state:  ConnectionState{ProtocolVersion: h.versionString(), Security: h.sec},
	}
	c.dl.conn = h.raw
	c.wsem = make(chan struct{}, 1)
	c.limits.maxPixels = h.cfg.maxPixels()
	c.limits.maxCutText = h.cfg.maxCutText()
	if h.tls != nil {
		c.conn = h.tls.conn
		st := h.tls.conn.ConnectionState()
		c.state.TLS = &st
		c.br = bufio.NewReaderSize(h.tls.conn, readBufferSize)
	} else {
		// Keep the bytes the handshake reader holds.
		c.br = bufio.NewReaderSize(&bufferedConn{Conn: h.raw, r: h.br}, readBufferSize)
	}
	return c
}

// ConnectionState returns how the connection is secured.
func (c *Conn) ConnectionState() ConnectionState {
	st := c.state
	if st.TLS != nil {
		tlsState := *st.TLS
		st.TLS = &tlsState
	}
	return st
}

// DesktopName returns the desktop name from ServerInit.
func (c *Conn) DesktopName() string { return c.name }

// Size returns the framebuffer size, as last announced by ServerInit or a
// DesktopSize update.
func (c *Conn) Size() (width, height int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.width, c.height
}

// PixelFormat returns the pixel format the server sends: the one from
// ServerInit, or the last one set with SetPixelFormat.
func (c *Conn) PixelFormat() PixelFormat {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pf
}

// pixelFormatSet reports whether the caller chose the pixel format.
func (c *Conn) pixelFormatSet() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pfSet
}

// ServerInit returns the connection's current size, pixel format and
// desktop name in ServerInit form, for a proxy that replays it to its own
// viewer.
func (c *Conn) ServerInit() ServerInit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ServerInit{Width: c.width, Height: c.height, PixelFormat: c.pf, Name: c.name}
}

// LocalAddr returns the transport's local address.
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the server's address.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// Close closes the connection. A goroutine blocked in ReadMessage,
// Relay or a send returns. Close is idempotent: later calls return nil.
func (c *Conn) Close() error {
	// No TLS close_notify: it would be a write that may block on a
	// stalled server, and VNC servers do not wait for it.
	var err error
	c.closeOnce.Do(func() { err = c.raw.Close() })
	return err
}

// SetDeadline sets the read and write deadlines of the connection, as
// net.Conn's SetDeadline does; the zero time means none. A context
// passed to a call interrupts it earlier, and the deadline set here
// applies again after.
//
// A read that misses its deadline while waiting for a message leaves the
// connection usable (ReadMessage returns an error wrapping
// os.ErrDeadlineExceeded); one that misses it inside a message leaves the
// stream out of step, and every later ReadMessage fails. A write that
// misses its deadline closes the connection: part of a message may have
// gone out, and TLS cannot resume after a write timeout.
func (c *Conn) SetDeadline(t time.Time) error { return c.dl.set(true, true, t) }

// SetReadDeadline sets the read deadline; see SetDeadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.dl.set(true, false, t) }

// SetWriteDeadline sets the write deadline; see SetDeadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.dl.set(false, true, t) }

// write sends one client message built by build into the reused buffer.
// ctx and the write deadline bound it; a write that fails for any reason
// closes the connection, since the server may have received part of the
// message.
func (c *Conn) write(ctx context.Context, what string, build func([]byte) []byte) error {
	// Waiting behind another writer honours ctx too.
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("rfb: %s: %w", what, ctx.Err())
	}
	defer func() { <-c.wsem }()
	if c.werr != nil {
		return c.werr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rfb: %s: %w", what, err)
	}
	c.wbuf = build(c.wbuf[:0])
	stop := c.dl.watch(ctx, true)
	_, err := c.conn.Write(c.wbuf)
	if stop() && err != nil {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	if err != nil {
		c.Close()
		c.werr = fmt.Errorf("rfb: %s: %w; the connection is closed", what, err)
		return c.werr
	}
	return nil
}
