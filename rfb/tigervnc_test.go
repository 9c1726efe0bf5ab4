package rfb_test

import (
	"image"
	"image/color"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/rfb"
)

// TestXtigervnc drives a real Xtigervnc 1.12 with -SecurityTypes X509Vnc.
// It does not request client certificates, so the missing-certificate
// case is QEMU's test only.
func TestXtigervnc(t *testing.T) {
	t.Parallel()
	peers.RequireTigerVNC(t)
	p := getCA(t, "rfb test CA")
	x, err := peers.StartXtigervnc(t, p.serverPKI(), []byte("s3cret"))
	require.NoError(t, err)

	c, err := rfb.Dial(testContext(t), "tcp", x.Addr, &rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc("s3cret")})
	require.NoError(t, err, x.Log())
	defer c.Close()
	st := c.ConnectionState()
	assert.Equal(t, "3.8", st.ProtocolVersion)
	assert.Equal(t, rfb.SecurityX509Vnc, st.Security)
	require.True(t, st.Encrypted())
	require.NotEmpty(t, st.TLS.VerifiedChains)
	assert.True(t, strings.HasPrefix(c.DesktopName(), "root@") || strings.Contains(c.DesktopName(), "@"), c.DesktopName())
	w, h := c.Size()
	assert.Equal(t, [2]int{640, 480}, [2]int{w, h})

	img, err := rfb.Screenshot(testContext(t), c)
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, 640, 480), img.Rect)
	// One wrong password (TigerVNC blacklists after several).
	_, err = rfb.Dial(testContext(t), "tcp", x.Addr, &rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc("wrong")})
	var authErr *rfb.AuthError
	require.ErrorAs(t, err, &authErr)
	assert.Equal(t, "Authentication failure", authErr.Reason)

	// A bare X server with no client shows its root window: black.
	black := color.RGBA{A: 0xff}
	for _, pt := range []image.Point{{0, 0}, {320, 240}, {639, 479}} {
		assert.Equal(t, black, img.RGBAAt(pt.X, pt.Y))
	}
}
