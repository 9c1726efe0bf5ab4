package rfb

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// AcceptViewerOptions tunes AcceptViewer. The zero value, like a nil
// pointer, is the default.
type AcceptViewerOptions struct {
	// MaxCutText bounds the text ViewerConn.ReadMessage keeps from one
	// ClientCutText message; the rest is read and dropped. Zero means
	// 1 MiB.
	MaxCutText int
}

// ViewerConn is the server side of a viewer's connection after
// AcceptViewer. It is the io.ReadWriteCloser a console proxy passes to
// Conn.Relay, and it can decode the viewer's messages for a proxy that
// inspects them before forwarding.
type ViewerConn struct {
	conn       net.Conn
	br         *bufio.Reader // holds what the viewer sent past ClientInit
	dl         deadlines
	minor      int
	shared     bool
	maxCutText int
	closeOnce  sync.Once
	rerr       error // sticky: a message was cut short
}

// AcceptViewer runs the server side of the RFB handshake on conn, for a
// viewer of a console proxy (noVNC behind a WebSocket, a desktop viewer):
// protocol version 3.8 (3.3 and 3.7 viewers are served in their
// version), security type None, the viewer's ClientInit, and ServerInit
// with init, normally the back end's Conn.ServerInit(), so that the
// viewer decodes what Relay then passes through. The proxy writes no
// protocol by hand.
//
// Security None means RFB itself neither authenticates the viewer nor
// encrypts the session: the proxy authenticates the viewer before (a
// one-time token over HTTPS, as CloudStack's console proxy does) and
// carries the session inside TLS (wss://). Never accept viewers with it
// on an open network socket.
//
// ctx bounds the handshake. On failure, the caller still owns conn and
// closes it. opts may be nil.
func AcceptViewer(ctx context.Context, conn net.Conn, init ServerInit, opts *AcceptViewerOptions) (*ViewerConn, error) {
	if err := init.PixelFormat.Validate(); err != nil {
		return nil, fmt.Errorf("rfb: AcceptViewer: ServerInit: %w", err)
	}
	serverInit, err := init.AppendBinary(nil)
	if err != nil {
		return nil, fmt.Errorf("rfb: AcceptViewer: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rfb: viewer handshake: %w", err)
	}
	v := &ViewerConn{conn: conn, br: bufio.NewReaderSize(conn, handshakeBufferSize), maxCutText: defaultMaxCutText}
	v.dl.conn = conn
	if opts != nil && opts.MaxCutText > 0 {
		v.maxCutText = opts.MaxCutText
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	err = v.handshake(serverInit)
	if !stop() {
		_ = conn.SetDeadline(time.Time{})
		if ctxErr := ctx.Err(); ctxErr != nil {
			if err == nil {
				err = errors.New("interrupted")
			}
			err = fmt.Errorf("rfb: viewer handshake: %w (%w)", ctxErr, err)
		}
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// handshake runs the server side of the version, security None,
// ClientInit and ServerInit exchange.
func (v *ViewerConn) handshake(serverInit []byte) error {
	if _, err := io.WriteString(v.conn, "RFB 003.008\n"); err != nil {
		return fmt.Errorf("rfb: sending ProtocolVersion to the viewer: %w", err)
	}
	var b [12]byte
	if _, err := io.ReadFull(v.br, b[:]); err != nil {
		return readError("the viewer's ProtocolVersion", err)
	}
	major, minor, ok := parseVersion(b)
	if !ok || major != 3 {
		return protocolError("viewer sent ProtocolVersion %q, not RFB 3.x", b[:])
	}
	switch {
	case minor >= 8:
		v.minor = 8
	case minor == 7:
		v.minor = 7
	default:
		v.minor = 3
	}
	if v.minor == 3 {
		// The server decides: None.
		if _, err := v.conn.Write([]byte{0, 0, 0, byte(SecurityNone)}); err != nil {
			return fmt.Errorf("rfb: sending the security type to the viewer: %w", err)
		}
	} else {
		if _, err := v.conn.Write([]byte{1, byte(SecurityNone)}); err != nil {
			return fmt.Errorf("rfb: sending the security types to the viewer: %w", err)
		}
		choice, err := readU8(v.br)
		if err != nil {
			return readError("the viewer's security type", err)
		}
		if choice != byte(SecurityNone) {
			if v.minor == 8 {
				const reason = "security type not offered"
				msg := binary.BigEndian.AppendUint32([]byte{0, 0, 0, 1}, uint32(len(reason)))
				_, _ = v.conn.Write(append(msg, reason...))
			}
			return protocolError("viewer chose security type %d, not None", choice)
		}
		if v.minor == 8 {
			// SecurityResult OK, which 3.7 does not send for None.
			if _, err := v.conn.Write([]byte{0, 0, 0, 0}); err != nil {
				return fmt.Errorf("rfb: sending SecurityResult to the viewer: %w", err)
			}
		}
	}
	shared, err := readU8(v.br)
	if err != nil {
		return readError("the viewer's ClientInit", err)
	}
	v.shared = shared != 0
	if _, err := v.conn.Write(serverInit); err != nil {
		return fmt.Errorf("rfb: sending ServerInit to the viewer: %w", err)
	}
	return nil
}

// ProtocolVersion returns the version the viewer speaks: "3.3", "3.7" or
// "3.8".
func (v *ViewerConn) ProtocolVersion() string { return fmt.Sprintf("3.%d", v.minor) }

// Shared returns the viewer's ClientInit flag: whether it accepts other
// viewers of the same desktop. A proxy decides what to do with it; the
// back end connection always asks for a shared session.
func (v *ViewerConn) Shared() bool { return v.shared }

// Read reads what the viewer sends, starting with any bytes read ahead
// during the handshake.
func (v *ViewerConn) Read(p []byte) (int, error) { return v.br.Read(p) }

// Write sends bytes to the viewer as they are.
func (v *ViewerConn) Write(p []byte) (int, error) { return v.conn.Write(p) }

// Close closes the connection to the viewer. It is idempotent: later
// calls return nil.
func (v *ViewerConn) Close() error {
	var err error
	v.closeOnce.Do(func() { err = v.conn.Close() })
	return err
}

// RemoteAddr returns the viewer's address.
func (v *ViewerConn) RemoteAddr() net.Addr { return v.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines, as on a net.Conn; a
// context passed to ReadMessage interrupts it earlier, and this deadline
// applies again after.
func (v *ViewerConn) SetDeadline(t time.Time) error { return v.dl.set(true, true, t) }

// ReadMessage reads and decodes the viewer's next message, for a proxy
// that inspects messages rather than relaying them as bytes. ctx bounds
// the wait. As for Conn.ReadMessage, an interruption before a message
// starts leaves the connection usable, and an error inside a message
// ends it: every later call returns the same error.
func (v *ViewerConn) ReadMessage(ctx context.Context) (*ClientMessage, error) {
	if v.rerr != nil {
		return nil, v.rerr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rfb: reading a viewer message: %w", err)
	}
	stop := v.dl.watch(ctx, false)
	_, err := v.br.Peek(1)
	var m *ClientMessage
	if err == nil {
		m, err = ReadClientMessage(v.br, v.maxCutText)
		if err != nil {
			v.rerr = err
		}
	} else if err == io.EOF {
		err = fmt.Errorf("rfb: viewer closed the connection: %w", err)
	} else {
		err = readError("a viewer message", err)
	}
	if stop() && err != nil {
		err = fmt.Errorf("rfb: reading a viewer message: %w (%w)", ctx.Err(), err)
		if v.rerr != nil {
			v.rerr = err
		}
	}
	return m, err
}

var _ io.ReadWriteCloser = (*ViewerConn)(nil)
