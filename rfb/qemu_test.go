package rfb_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"image"
	"image/color"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/rfb"
)

// QEMU -machine none shows a 640x480 black screen with one line of VGA
// grey text, "This VM has no graphic display device.", inside
// qemuTextBox.
var (
	qemuGrey    = color.RGBA{R: 0xaa, G: 0xaa, B: 0xaa, A: 0xff}
	qemuTextBox = image.Rect(160, 220, 480, 245)
)

// assertQEMUScreen checks a capture of QEMU's "no display" screen: black
// outside the text box, grey text inside, nothing else.
func assertQEMUScreen(t *testing.T, img *rfb.Image) {
	t.Helper()
	require.Equal(t, image.Rect(0, 0, 640, 480), img.Rect)
	black := color.RGBA{A: 0xff}
	grey, outside := 0, 0
	for y := range 480 {
		for x := range 640 {
			c := img.RGBAAt(x, y)
			switch {
			case c == qemuGrey && image.Pt(x, y).In(qemuTextBox):
				grey++
			case c == black:
			default:
				outside++
			}
		}
	}
	assert.Zero(t, outside, "pixels neither black nor text grey in the text box")
	assert.Greater(t, grey, 500, "grey text pixels")
	// The corners and the band above the text are black.
	for _, p := range []image.Point{{0, 0}, {639, 0}, {0, 479}, {639, 479}, {320, 100}} {
		assert.Equal(t, black, img.RGBAAt(p.X, p.Y), "pixel %v", p)
	}
}

// TestQEMU drives a real QEMU 7.2 VNC server with tls-creds-x509
// (verify-peer=on) and a VNC password: VeNCrypt X509Vnc, as a CloudStack
// console proxy meets it.
func TestQEMU(t *testing.T) {
	t.Parallel()
	peers.Require(t, "qemu-system-x86_64")
	p := getCA(t, "rfb test CA")
	foreign := getCA(t, "foreign CA")
	const password = "pw2longer-than8"
	q, err := peers.StartQEMUVNCPassword(t, p.serverPKI(), []byte(password), peers.QEMUVNCOptions{})
	require.NoError(t, err)

	dial := func(t *testing.T, cfg *rfb.Config) (*rfb.Conn, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		return rfb.Dial(ctx, "tcp", q.Addr, cfg)
	}
	good := func() *rfb.Config {
		return &rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc(password)}
	}

	t.Run("screenshot", func(t *testing.T) {
		c, err := dial(t, good())
		require.NoError(t, err, q.Log())
		defer c.Close()
		st := c.ConnectionState()
		assert.Equal(t, "3.8", st.ProtocolVersion)
		assert.Equal(t, rfb.SecurityX509Vnc, st.Security)
		require.True(t, st.Encrypted())
		assert.Equal(t, uint16(tls.VersionTLS13), st.TLS.Version)
		assert.Equal(t, "localhost", st.TLS.PeerCertificates[0].Subject.CommonName)
		require.NotEmpty(t, st.TLS.VerifiedChains)
		assert.Equal(t, "QEMU", c.DesktopName())
		assert.Equal(t, "32bpp depth 24 LE true colour R255<<16 G255<<8 B255<<0", c.PixelFormat().String())

		img, err := rfb.Screenshot(testContext(t), c)
		require.NoError(t, err)
		assertQEMUScreen(t, img)

		// QEMU accepts input and serves a second frame in another
		// pixel format.
		require.NoError(t, c.PointerEvent(t.Context(), 1, 10, 10))
		require.NoError(t, c.KeyEvent(t.Context(), 0xff0d, true))
		require.NoError(t, c.KeyEvent(t.Context(), 0xff0d, false))
		require.NoError(t, c.CutText(t.Context(), "kvmpki"))
		for _, pf := range []rfb.PixelFormat{
			rfb.PixelFormatRGBA(),
			{BitsPerPixel: 16, Depth: 16, BigEndian: true, TrueColour: true, RedMax: 31, GreenMax: 63, BlueMax: 31, RedShift: 11, GreenShift: 5, BlueShift: 0},
		} {
			require.NoError(t, c.SetPixelFormat(t.Context(), pf))
			img, err := rfb.Screenshot(testContext(t), c)
			require.NoError(t, err, "format %v", pf)
			if pf.BitsPerPixel == 16 {
				// 0xaa in 5 and 6 bits comes back as 0xad and 0xaa.
				for i := range img.Pix {
					if img.Pix[i] == 0xad {
						img.Pix[i] = 0xaa
					}
				}
			}
			assertQEMUScreen(t, img)
		}
	})

	t.Run("password truncated to 8 bytes", func(t *testing.T) {
		cfg := good()
		cfg.Password = passwordFunc(password[:8])
		c, err := dial(t, cfg)
		require.NoError(t, err, q.Log())
		c.Close()
	})

	refusals := []struct {
		name     string
		cfg      *rfb.Config
		wantIs   error
		wantAs   any
		wantText string
		qemuLog  string
	}{
		{
			name:     "wrong password",
			cfg:      &rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc("wrong")},
			wantIs:   rfb.ErrAuthFailed,
			wantAs:   new(*rfb.AuthError),
			wantText: `server says "Authentication failed"`,
		},
		{
			name:     "missing client certificate",
			cfg:      &rfb.Config{TLSConfig: &tls.Config{RootCAs: p.roots}, Password: passwordFunc(password)},
			wantIs:   rfb.ErrTLSClientRejected,
			wantText: "client certificate missing",
			qemuLog:  "No certificate was found",
		},
		{
			name:    "client certificate from another CA",
			cfg:     &rfb.Config{TLSConfig: &tls.Config{RootCAs: p.roots, Certificates: []tls.Certificate{foreign.client.cert}}, Password: passwordFunc(password)},
			wantIs:  rfb.ErrTLSClientRejected,
			qemuLog: "hasn't got a known issuer",
		},
		{
			name:     "server certificate from another CA",
			cfg:      &rfb.Config{TLSConfig: foreign.clientTLS(), Password: passwordFunc(password)},
			wantAs:   new(x509.UnknownAuthorityError),
			wantText: "rfb: TLS handshake with the VNC server",
		},
		{
			name:     "wrong server name",
			cfg:      &rfb.Config{TLSConfig: &tls.Config{RootCAs: p.roots, Certificates: []tls.Certificate{p.client.cert}, ServerName: "kvm9.example.org"}, Password: passwordFunc(password)},
			wantAs:   new(x509.HostnameError),
			wantText: "kvm9.example.org",
		},
		{
			name:     "unencrypted methods only",
			cfg:      &rfb.Config{Security: []rfb.Security{rfb.SecurityNone, rfb.SecurityVNCAuth}, Password: passwordFunc(password)},
			wantAs:   new(*rfb.NoSecurityError),
			wantText: "server offers [VeNCrypt (19)]",
		},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial(t, tc.cfg)
			if c != nil {
				c.Close()
			}
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "rfb: "), err.Error())
			if tc.wantIs != nil {
				assert.ErrorIs(t, err, tc.wantIs)
			}
			if tc.wantAs != nil {
				assert.ErrorAs(t, err, tc.wantAs)
			}
			if tc.wantText != "" {
				assert.ErrorContains(t, err, tc.wantText)
			}
			if tc.qemuLog != "" {
				assert.Eventually(t, func() bool { return strings.Contains(q.Log(), tc.qemuLog) }, 2*time.Second, 20*time.Millisecond,
					"QEMU log lacks %q:\n%s", tc.qemuLog, q.Log())
			}
		})
	}
}

// TestQEMUX509None checks X509None, QEMU's offer without a password.
func TestQEMUX509None(t *testing.T) {
	t.Parallel()
	peers.Require(t, "qemu-system-x86_64")
	p := getCA(t, "rfb test CA")
	q, err := peers.StartQEMUVNC(t, p.serverPKI(), peers.QEMUVNCOptions{})
	require.NoError(t, err)
	// Dial by IP: the certificate's IP SAN is checked.
	c, err := rfb.Dial(testContext(t), "tcp", q.Addr, &rfb.Config{TLSConfig: p.clientTLS()})
	require.NoError(t, err, q.Log())
	defer c.Close()
	assert.Equal(t, rfb.SecurityX509None, c.ConnectionState().Security)
	img, err := rfb.Screenshot(testContext(t), c)
	require.NoError(t, err)
	assertQEMUScreen(t, img)
}
