package rfb_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

// pipePeer is an io.ReadWriteCloser that is not a net.Conn: two io.Pipes,
// whose Close ends both.
type pipePeer struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func (p *pipePeer) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipePeer) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipePeer) Close() error {
	p.r.Close()
	return p.w.Close()
}

// newPipePeer returns the relay's side and the viewer's side.
func newPipePeer() (relaySide, viewerSide *pipePeer) {
	toViewerR, toViewerW := io.Pipe()
	toRelayR, toRelayW := io.Pipe()
	return &pipePeer{r: toRelayR, w: toViewerW}, &pipePeer{r: toViewerR, w: toRelayW}
}

// settledGoroutines waits until the number of goroutines is at most n,
// and returns the last count.
func settledGoroutines(n int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := runtime.NumGoroutine()
		if got <= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRelayLeavesNoGoroutine ends a relay in every way it can end and
// checks that Relay returns only when both copies have stopped: no
// goroutine outlives it (issue 11, item 18). Not parallel, so that the
// goroutine count is this test's.
func TestRelayLeavesNoGoroutine(t *testing.T) {
	tests := []struct {
		name string
		// end ends the relay, given the viewer's side and the
		// relay's context cancel.
		end     func(viewer io.ReadWriteCloser, cancel context.CancelFunc, server *stallServer)
		pipe    bool // the peer is io.Pipes, not a net.Conn
		wantErr error
	}{
		{name: "viewer leaves", end: func(v io.ReadWriteCloser, _ context.CancelFunc, _ *stallServer) { v.Close() }},
		{name: "server leaves", end: func(_ io.ReadWriteCloser, _ context.CancelFunc, s *stallServer) { s.closeConn() }},
		{name: "context cancelled", end: func(_ io.ReadWriteCloser, cancel context.CancelFunc, _ *stallServer) { cancel() }, wantErr: context.Canceled},
		{name: "context cancelled, pipe peer", pipe: true, end: func(_ io.ReadWriteCloser, cancel context.CancelFunc, _ *stallServer) { cancel() }, wantErr: context.Canceled},
		{name: "viewer leaves, pipe peer", pipe: true, end: func(v io.ReadWriteCloser, _ context.CancelFunc, _ *stallServer) { v.Close() }},
		{
			// The server stops reading and the viewer keeps sending:
			// the copy to the server is blocked in a write when the
			// context ends.
			name: "context cancelled while blocked writing to a stalled server",
			end: func(v io.ReadWriteCloser, cancel context.CancelFunc, _ *stallServer) {
				go func() {
					for {
						if _, err := v.Write(make([]byte, 1<<20)); err != nil {
							return
						}
					}
				}()
				time.Sleep(200 * time.Millisecond)
				cancel()
			},
			wantErr: context.Canceled,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newStallServer(t)
			c, err := rfb.Dial(testContext(t), "tcp", srv.addr, noneConfig())
			require.NoError(t, err)
			var relaySide, viewer io.ReadWriteCloser
			if tc.pipe {
				relaySide, viewer = newPipePeer()
			} else {
				relaySide, viewer = net.Pipe()
			}
			defer viewer.Close()
			// Drain what the server sends the viewer, as a viewer does.
			go io.Copy(io.Discard, viewer)

			before := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			relayed := make(chan error, 1)
			go func() { relayed <- c.Relay(ctx, relaySide) }()
			time.Sleep(20 * time.Millisecond)
			tc.end(viewer, cancel, srv)
			select {
			case err := <-relayed:
				if tc.wantErr != nil {
					assert.ErrorIs(t, err, tc.wantErr)
				} else {
					assert.NoError(t, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Relay did not return")
			}
			viewer.Close()
			srv.closeConn()
			// Relay's two copies, the viewer's drain (counted in
			// before) and writer, and the server's goroutine (counted
			// too) have all ended.
			assert.LessOrEqual(t, settledGoroutines(before-2), before-2, "goroutines after Relay returned")
		})
	}
}

// stallServer completes a None handshake and then neither reads nor
// writes until closeConn, like a hung VNC server.
type stallServer struct {
	addr string
	conn chan net.Conn
	done chan struct{}
}

func newStallServer(t *testing.T) *stallServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &stallServer{addr: ln.Addr().String(), conn: make(chan net.Conn, 1), done: make(chan struct{})}
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		hs := handshakeNone38()
		if _, err := c.Write(hs[:12]); err != nil {
			return
		}
		var v [12]byte
		io.ReadFull(c, v[:])
		c.Write(hs[12:14])
		var choice [1]byte
		io.ReadFull(c, choice[:])
		c.Write(hs[14:18])
		io.ReadFull(c, choice[:]) // ClientInit
		c.Write(hs[18:])
		s.conn <- c
		<-s.done
		c.Close()
	}()
	t.Cleanup(s.closeConn)
	return s
}

func (s *stallServer) closeConn() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

// TestWriteContext checks that a send to a server that has stopped
// reading ends with the context or the write deadline, and that the
// connection is closed after (issue 11, item 18).
func TestWriteContext(t *testing.T) {
	t.Parallel()
	// Send until the socket buffers are full and a write blocks.
	fill := func(ctx context.Context, c *rfb.Conn) error {
		text := strings.Repeat("x", 1<<20)
		for {
			if err := c.CutText(ctx, text); err != nil {
				return err
			}
		}
	}
	tests := []struct {
		name   string
		send   func(c *rfb.Conn) error
		wantIs error
	}{
		{"context", func(c *rfb.Conn) error {
			// Long enough for the buffers to fill first, so that
			// the context ends a write blocked in the kernel.
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			return fill(ctx, c)
		}, context.DeadlineExceeded},
		{"write deadline", func(c *rfb.Conn) error {
			require.NoError(t, c.SetWriteDeadline(time.Now().Add(3*time.Second)))
			return fill(context.Background(), c)
		}, os.ErrDeadlineExceeded},
		{"context ends the wait behind a blocked writer", func(c *rfb.Conn) error {
			go fill(context.Background(), c)
			time.Sleep(100 * time.Millisecond)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			for {
				// Until the writer above blocks in the kernel and
				// holds the connection.
				if err := c.KeyEvent(ctx, 0xff0d, true); err != nil {
					return err
				}
			}
		}, context.DeadlineExceeded},
		{"context already done", func(c *rfb.Conn) error {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return c.KeyEvent(ctx, 0xff0d, true)
		}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newStallServer(t)
			c, err := rfb.Dial(testContext(t), "tcp", srv.addr, noneConfig())
			require.NoError(t, err)
			defer c.Close()
			start := time.Now()
			err = tc.send(c)
			assert.ErrorIs(t, err, tc.wantIs)
			assert.Less(t, time.Since(start), 8*time.Second)
			switch {
			case strings.Contains(tc.name, "behind"):
				// The other writer still holds the connection;
				// Close ends it.
				require.NoError(t, c.Close())
				return
			case errors.Is(tc.wantIs, context.Canceled):
				// Nothing was sent: the connection is intact.
				assert.NoError(t, c.KeyEvent(context.Background(), 0xff0d, false))
				return
			}
			assert.ErrorContains(t, c.KeyEvent(context.Background(), 0xff0d, false), "the connection is closed")
			_, err = c.ReadMessage(context.Background(), nil)
			assert.ErrorIs(t, err, net.ErrClosed)
		})
	}
}

// TestReadMessageContext checks that a context ending the wait for a
// message leaves the connection usable, and that one ending it inside a
// message leaves it out of step for good.
func TestReadMessageContext(t *testing.T) {
	t.Parallel()
	send := make(chan []byte)
	srv := rfbtest.NewServer(&rfbtest.Config{Handler: func(sc *rfbtest.ServerConn) error {
		for b := range send {
			if _, err := sc.Conn().Write(b); err != nil {
				return err
			}
		}
		return nil
	}})
	defer srv.Close()
	defer close(send)
	c, err := rfb.Dial(testContext(t), "tcp", srv.Addr, noneConfig())
	require.NoError(t, err)
	defer c.Close()
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}

	_, err = c.ReadMessage(short(), nil)
	require.ErrorIs(t, err, context.DeadlineExceeded, "waiting for a message")
	send <- []byte{2}
	msg, err := c.ReadMessage(t.Context(), nil)
	require.NoError(t, err, "usable after an interrupted wait")
	assert.Equal(t, rfb.Bell{}, msg)

	require.NoError(t, c.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, err = c.ReadMessage(t.Context(), nil)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the read deadline")
	require.NoError(t, c.SetReadDeadline(time.Time{}))

	send <- fbUpdate(rectHeader(0, 0, 2, 2, rfb.EncodingRaw))[:9] // half a rectangle header
	_, err = c.ReadMessage(short(), nil)
	require.ErrorIs(t, err, context.DeadlineExceeded, "inside a message")
	send <- bytes.Repeat([]byte{2}, 32)
	_, again := c.ReadMessage(t.Context(), nil)
	assert.Equal(t, err, again, "out of step for good")
}

// TestAcceptViewer runs a console proxy end to end: the proxy dials a
// VeNCrypt X509Vnc server, accepts a viewer with AcceptViewer (RFB 3.8,
// security None, the back end's ServerInit) and relays; the viewer, our
// own client, takes a screenshot through it.
func TestAcceptViewer(t *testing.T) {
	t.Parallel()
	p := getCA(t, "rfb test CA")
	backend := rfbtest.NewServer(&rfbtest.Config{
		Security: []rfb.Security{rfb.SecurityX509Vnc}, TLSConfig: p.serverTLS(), Password: []byte("s3cret"),
		Width: 40, Height: 30, Name: "QEMU (vm-42)",
	})
	defer backend.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	proxied := make(chan error, 1)
	go func() {
		proxied <- func() error {
			vc, err := ln.Accept()
			if err != nil {
				return err
			}
			ctx := context.Background()
			c, err := rfb.Dial(ctx, "tcp", backend.Addr, &rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc("s3cret")})
			if err != nil {
				vc.Close()
				return err
			}
			v, err := rfb.AcceptViewer(ctx, vc, c.ServerInit(), nil)
			if err != nil {
				vc.Close()
				c.Close()
				return err
			}
			if !v.Shared() || v.ProtocolVersion() != "3.8" {
				return errors.New("viewer state")
			}
			return c.Relay(ctx, v)
		}()
	}()

	viewer, err := rfb.Dial(testContext(t), "tcp", ln.Addr().String(), noneConfig())
	require.NoError(t, err)
	assert.Equal(t, "QEMU (vm-42)", viewer.DesktopName())
	assert.Equal(t, rfbtest.QEMUPixelFormat(), viewer.PixelFormat())
	img, err := rfb.Screenshot(testContext(t), viewer)
	require.NoError(t, err)
	assert.Equal(t, rfbtest.TestPattern(40, 30).Pix, img.ToRGBA().Pix)
	require.NoError(t, viewer.Close())
	select {
	case err := <-proxied:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy's relay did not end with the viewer")
	}
}

// TestAcceptViewerScripted plays viewers of each version, and bad ones,
// against AcceptViewer and checks the bytes it sends.
func TestAcceptViewerScripted(t *testing.T) {
	t.Parallel()
	init := rfb.ServerInit{Width: 8, Height: 4, PixelFormat: rfbtest.QEMUPixelFormat(), Name: "x"}
	initBytes, err := init.AppendBinary(nil)
	require.NoError(t, err)
	tests := []struct {
		name       string
		viewer     string
		wantSent   string
		wantShared bool
		wantVer    string
		wantErr    string
		wantMsg    *rfb.ClientMessage
	}{
		{name: "3.8", viewer: "RFB 003.008\n\x01\x01\x02\x00\x00\x01\x00\x00\x00\x00",
			wantSent: "RFB 003.008\n\x01\x01\x00\x00\x00\x00" + string(initBytes), wantShared: true, wantVer: "3.8",
			wantMsg: &rfb.ClientMessage{Type: rfb.ClientSetEncodings, Encodings: []rfb.Encoding{0}}},
		{name: "3.7 gets no SecurityResult", viewer: "RFB 003.007\n\x01\x00",
			wantSent: "RFB 003.008\n\x01\x01" + string(initBytes), wantVer: "3.7"},
		{name: "3.3 is told None", viewer: "RFB 003.003\n\x01",
			wantSent: "RFB 003.008\n\x00\x00\x00\x01" + string(initBytes), wantShared: true, wantVer: "3.3"},
		{name: "wrong security type", viewer: "RFB 003.008\n\x02",
			wantSent: "RFB 003.008\n\x01\x01\x00\x00\x00\x01\x00\x00\x00\x19security type not offered", wantErr: "viewer chose security type 2"},
		{name: "not RFB", viewer: "GET / HTTP/1.1\r\n", wantErr: "not RFB 3.x"},
		{name: "cut short", viewer: "RFB 003.008\n\x01", wantErr: "ClientInit: unexpected EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn := newScriptConn([]byte(tc.viewer))
			v, err := rfb.AcceptViewer(t.Context(), conn, init, nil)
			if tc.wantSent != "" {
				assert.Equal(t, tc.wantSent, conn.w.String())
			}
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Regexp(t, "^rfb: ", err.Error())
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantShared, v.Shared())
			assert.Equal(t, tc.wantVer, v.ProtocolVersion())
			if tc.wantMsg != nil {
				m, err := v.ReadMessage(t.Context())
				require.NoError(t, err)
				assert.Equal(t, tc.wantMsg, m)
			}
			_, err = v.ReadMessage(t.Context())
			assert.ErrorIs(t, err, io.EOF)
		})
	}
	_, err = rfb.AcceptViewer(t.Context(), newScriptConn(nil), rfb.ServerInit{Width: 1, Height: 1}, nil)
	assert.ErrorIs(t, err, rfb.ErrProtocol, "an invalid pixel format for the viewer")
}

// TestReadClientMessage decodes each client message and checks that
// every proper prefix fails with an unexpected EOF, and the bounds.
func TestReadClientMessage(t *testing.T) {
	t.Parallel()
	pf, _ := rfb.PixelFormatRGBA().AppendBinary([]byte{0, 0, 0, 0})
	tests := []struct {
		name    string
		msg     []byte
		want    *rfb.ClientMessage
		wantErr string
	}{
		{name: "SetPixelFormat", msg: pf, want: &rfb.ClientMessage{Type: rfb.ClientSetPixelFormat, PixelFormat: rfb.PixelFormatRGBA()}},
		{name: "SetEncodings", msg: []byte{2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21},
			want: &rfb.ClientMessage{Type: rfb.ClientSetEncodings, Encodings: []rfb.Encoding{rfb.EncodingRaw, rfb.EncodingDesktopSize}}},
		{name: "FramebufferUpdateRequest", msg: []byte{3, 1, 0, 1, 0, 2, 0, 3, 0, 4},
			want: &rfb.ClientMessage{Type: rfb.ClientFramebufferUpdateRequest, Incremental: true, Rect: image.Rect(1, 2, 4, 6)}},
		{name: "KeyEvent", msg: []byte{4, 1, 0, 0, 0, 0, 0xff, 0x0d}, want: &rfb.ClientMessage{Type: rfb.ClientKeyEvent, Down: true, Key: 0xff0d}},
		{name: "PointerEvent", msg: []byte{5, 3, 1, 0, 0, 2}, want: &rfb.ClientMessage{Type: rfb.ClientPointerEvent, Buttons: 3, X: 256, Y: 2}},
		{name: "ClientCutText", msg: []byte{6, 0, 0, 0, 0, 0, 0, 2, 'h', 'i'}, want: &rfb.ClientMessage{Type: rfb.ClientCutText, Text: []byte("hi")}},
		{name: "ClientCutText over the limit", msg: []byte{6, 0, 0, 0, 0, 0, 0, 6, 'a', 'b', 'c', 'd', 'e', 'f'},
			want: &rfb.ClientMessage{Type: rfb.ClientCutText, Text: []byte("abcd"), Truncated: true}},
		{name: "Extended Clipboard length", msg: []byte{6, 0, 0, 0, 0x80, 0, 0, 2}, wantErr: "Extended Clipboard"},
		{name: "bad pixel format", msg: append([]byte{0, 0, 0, 0, 24, 24}, make([]byte, 14)...), wantErr: "24 bits per pixel"},
		{name: "unknown type", msg: []byte{9}, wantErr: "unknown client message type 9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := rfb.ReadClientMessage(bufioReader(tc.msg), 4)
			if tc.wantErr != "" {
				assert.ErrorIs(t, err, rfb.ErrProtocol)
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, m)
			for n := 1; n < len(tc.msg); n++ {
				_, err := rfb.ReadClientMessage(bufioReader(tc.msg[:n]), 4)
				assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "prefix of %d bytes", n)
			}
		})
	}
}
