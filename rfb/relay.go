package rfb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
)

// Relay copies bytes between the server and peer in both directions
// until one side ends or ctx is done, then closes c and peer and waits
// for both copies to stop: it leaves no goroutine behind. It is the raw
// mode of a console proxy: the handshake, including TLS and the VNC
// password, was done by Client, and peer (the proxy's viewer, typically
// a *ViewerConn from AcceptViewer, which presented c.ServerInit())
// exchanges ordinary RFB messages with the server from here on. Bytes
// already read ahead from the server, or from a *ViewerConn's viewer,
// are relayed first.
//
// peer.Close must make peer's blocked Read and Write return, as
// net.Conn's Close does; Relay waits for them.
//
// Relay returns nil when either side closed its end, and otherwise the
// first error (ctx's when ctx ended it). It must not run alongside
// ReadMessage; the send methods wait until it has returned, and then
// fail on the closed connection.
func (c *Conn) Relay(ctx context.Context, peer io.ReadWriteCloser) error {
	errc := make(chan error, 2)
	go func() {
		// bufio.Reader.WriteTo flushes what it holds, then copies.
		_, err := c.br.WriteTo(peer)
		errc <- relayError("server to peer", err)
	}()
	go func() {
		// Holding the write token keeps the senders from slipping a
		// message into the middle of one of the peer's. Closing c
		// ends a writer that holds it, and with it this wait.
		c.wsem <- struct{}{}
		defer func() { <-c.wsem }()
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
	peer.Close()
	for range pending {
		<-errc
	}
	return first
}

// relayError maps the ordinary ends of a relay to nil.
func relayError(dir string, err error) error {
	if err == nil || isClosed(err) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return fmt.Errorf("rfb: relay %s: %w", dir, err)
}
