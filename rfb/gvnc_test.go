package rfb_test

import (
	"context"
	"image"
	"image/draw"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

// TestAcceptViewerGvnccapture puts a real viewer behind AcceptViewer and
// Relay: gvnccapture (gtk-vnc 1.3, the library of virt-manager and
// remote-viewer) connects to the proxy, which relays a VeNCrypt X509Vnc
// back end, and saves the screen; the PNG must be the back end's image,
// pixel for pixel.
func TestAcceptViewerGvnccapture(t *testing.T) {
	t.Parallel()
	peers.Require(t, "gvnccapture")
	p := getCA(t, "rfb test CA")
	const w, h = 64, 48
	backend := rfbtest.NewServer(&rfbtest.Config{
		Security: []rfb.Security{rfb.SecurityX509Vnc}, TLSConfig: p.serverTLS(), Password: []byte("s3cret"),
		Width: w, Height: h, Name: "QEMU (vm-42)",
	})
	defer backend.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	proxied := make(chan error, 1)
	go func() {
		proxied <- func() error {
			vc, err := ln.Accept()
			if err != nil {
				return err
			}
			defer vc.Close()
			c, err := rfb.Dial(ctx, "tcp", backend.Addr, &rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc("s3cret")})
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := rfb.AcceptViewer(ctx, vc, c.ServerInit(), nil)
			if err != nil {
				return err
			}
			return c.Relay(ctx, v)
		}()
	}()

	out := filepath.Join(t.TempDir(), "screen.png")
	// gvnccapture reads HOST:DISPLAY and connects to port 5900+DISPLAY;
	// the kernel's ephemeral ports are above 5900.
	display := ln.Addr().(*net.TCPAddr).Port - 5900
	require.Positive(t, display)
	cmd := exec.CommandContext(ctx, "gvnccapture", "--debug", "127.0.0.1:"+strconv.Itoa(display), out)
	log, err := cmd.CombinedOutput()
	require.NoError(t, err, "gvnccapture: %s", log)
	select {
	case err := <-proxied:
		assert.NoError(t, err, "proxy")
	case <-time.After(10 * time.Second):
		t.Error("the relay did not end when gvnccapture left")
	}

	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	shot, err := png.Decode(f)
	require.NoError(t, err)
	got := image.NewRGBA(shot.Bounds())
	draw.Draw(got, got.Rect, shot, shot.Bounds().Min, draw.Src)
	want := rfbtest.TestPattern(w, h)
	require.Equal(t, want.Rect, got.Rect)
	assert.Equal(t, want.Pix, got.Pix, "gvnccapture's screen is the back end's image")
}
