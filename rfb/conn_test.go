package rfb_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"image"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

// TestRelay hands an authenticated X509Vnc session to a viewer that
// speaks plain RFB messages, as a console proxy does.
func TestRelay(t *testing.T) {
	t.Parallel()
	p := getCA(t, "rfb test CA")
	srv := rfbtest.NewServer(&rfbtest.Config{
		Security: []rfb.Security{rfb.SecurityX509Vnc}, TLSConfig: p.serverTLS(), Password: []byte("s3cret"),
		Width: 16, Height: 8,
	})
	defer srv.Close()
	c, err := rfb.Dial(testContext(t), "tcp", srv.Addr, &rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc("s3cret")})
	require.NoError(t, err)

	proxySide, viewer := net.Pipe()
	relayed := make(chan error, 1)
	go func() { relayed <- c.Relay(context.Background(), proxySide) }()

	// The viewer asks for the whole screen and reads the Raw update
	// exactly as the server encoded it.
	req := []byte{3, 0, 0, 0, 0, 0}
	req = binary.BigEndian.AppendUint16(req, 16)
	req = binary.BigEndian.AppendUint16(req, 8)
	_, err = viewer.Write(req)
	require.NoError(t, err)
	want := []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 16, 0, 8, 0, 0, 0, 0}
	want = rfbtest.AppendPixels(want, rfbtest.TestPattern(16, 8), image.Rect(0, 0, 16, 8), rfbtest.QEMUPixelFormat())
	got := make([]byte, len(want))
	_, err = io.ReadFull(viewer, got)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "relayed update differs")

	// The viewer leaving ends the relay cleanly and closes the server
	// connection.
	viewer.Close()
	select {
	case err := <-relayed:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Relay did not return after the viewer left")
	}
	_, err = c.ReadMessage(t.Context(), nil)
	assert.Error(t, err)
}

// TestCloseWakesReader checks that Close ends a ReadMessage blocked on a
// silent server, and that a Screenshot context bounds the wait.
func TestCloseWakesReader(t *testing.T) {
	t.Parallel()
	srv := rfbtest.NewServer(&rfbtest.Config{Handler: func(sc *rfbtest.ServerConn) error {
		_, err := io.Copy(io.Discard, sc.Conn()) // never answers
		return err
	}})
	defer srv.Close()
	c, err := rfb.Dial(testContext(t), "tcp", srv.Addr, noneConfig())
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = rfb.Screenshot(ctx, c)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	done := make(chan error, 1)
	go func() {
		_, err := c.ReadMessage(t.Context(), nil)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, c.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("ReadMessage still blocked after Close")
	}
}
