package rfb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Relay copies bytes between the server and peer in both directions
// until one side ends or ctx is done, then closes c (and peer, if it is an
// io.Closer). It is the raw mode of a console proxy: the handshake,
// including TLS and the VNC password, was done by Client, and peer (the
// proxy's viewer, to which the proxy has presented its own handshake,
// typically ending with c.ServerInit()) exchanges ordinary RFB messages
// with the server from here on. Bytes already read ahead from the server
// are relayed first.
//
// Relay returns nil when either side closed its end, and otherwise the
// first error. It must not run alongside ReadMessage.
func (c *Conn) Relay(ctx context.Context, peer io.ReadWriter) error {
	errc := make(chan error, 2)
	go func() {
		// bufio.Reader.WriteTo flushes what it holds, then copies.
		_, err := c.br.WriteTo(peer)
		errc <- relayError("server to peer", err)
	}()
	go func() {
		_, err := io.Copy(c.conn, peer)
		errc <- relayError("peer to server", err)
	}()
	var first error
	pending := 2
	select {
	case first = <-errc:
		pending--
	case <-ctx.Done():
		first = fmt.Errorf("rfb: relay: %w", ctx.Err())
	}
	c.Close()
	if cl, ok := peer.(io.Closer); ok {
		cl.Close()
	}
	// Wait for the other direction, which the closes have ended, unless
	// peer ignores Close.
	for range pending {
		select {
		case <-errc:
		case <-time.After(closeWait):
		}
	}
	return first
}

// relayError maps the ordinary ends of a relay to nil.
func relayError(dir string, err error) error {
	if err == nil || isClosed(err) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("rfb: relay %s: %w", dir, err)
}
