package rfb_test

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

// TestReadMessage feeds scripted server messages to an established
// connection.
func TestReadMessage(t *testing.T) {
	t.Parallel()
	red := bytes.Repeat([]byte{0, 0, 0xff, 0}, 2*3) // 2x3 BGRX red
	colourMap := binary.BigEndian.AppendUint16([]byte{1, 0}, 10)
	colourMap = binary.BigEndian.AppendUint16(colourMap, 2)
	colourMap = append(colourMap, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x80, 0x00, 0xff, 0xff)

	tests := []struct {
		name    string
		script  []byte
		maxCut  int
		want    []rfb.ServerMessage // messages before the end
		wantErr string              // "" means the script ends cleanly (EOF)
		check   func(t *testing.T, c *rfb.Conn, fb *rfb.Framebuffer)
	}{
		{name: "bell", script: []byte{2, 2}, want: []rfb.ServerMessage{rfb.Bell{}, rfb.Bell{}}},
		{
			name:   "cut text",
			script: cutText(5, "hello"),
			want:   []rfb.ServerMessage{&rfb.ServerCutText{Text: []byte("hello")}},
		},
		{
			name:   "cut text truncated, stream kept in step",
			script: append(cutText(10, "0123456789"), 2),
			maxCut: 4,
			want:   []rfb.ServerMessage{&rfb.ServerCutText{Text: []byte("0123"), Truncated: true}, rfb.Bell{}},
		},
		{
			name:    "cut text with extended clipboard length",
			script:  cutText(0x80000010, ""),
			wantErr: "Extended Clipboard was not negotiated",
		},
		{
			name:   "colour map",
			script: colourMap,
			want:   []rfb.ServerMessage{&rfb.SetColourMapEntries{First: 10, Colours: []rfb.Colour{{R: 0xffff, G: 0, B: 0}, {R: 0, G: 0x8000, B: 0xffff}}}},
		},
		{
			name:    "colour map past entry 65535",
			script:  []byte{1, 0, 0xff, 0xff, 0, 2},
			wantErr: "pass entry 65535",
		},
		{
			name:   "raw rectangle",
			script: fbUpdate(append(rectHeader(1, 2, 2, 3, rfb.EncodingRaw), red...)),
			want:   []rfb.ServerMessage{&rfb.FramebufferUpdate{Rects: []rfb.Rectangle{{X: 1, Y: 2, Width: 2, Height: 3, Encoding: rfb.EncodingRaw}}}},
			check: func(t *testing.T, c *rfb.Conn, fb *rfb.Framebuffer) {
				img := fb.Image()
				assert.Equal(t, color.RGBA{R: 0xff, A: 0xff}, img.RGBAAt(1, 2))
				assert.Equal(t, color.RGBA{R: 0xff, A: 0xff}, img.RGBAAt(2, 4))
				assert.Equal(t, color.RGBA{A: 0xff}, img.RGBAAt(0, 2))
				assert.Equal(t, color.RGBA{A: 0xff}, img.RGBAAt(3, 2))
			},
		},
		{
			name:   "desktop size",
			script: fbUpdate(rectHeader(0, 0, 100, 20, rfb.EncodingDesktopSize), append(rectHeader(90, 10, 2, 3, rfb.EncodingRaw), red...)),
			want: []rfb.ServerMessage{&rfb.FramebufferUpdate{Rects: []rfb.Rectangle{
				{Width: 100, Height: 20, Encoding: rfb.EncodingDesktopSize},
				{X: 90, Y: 10, Width: 2, Height: 3, Encoding: rfb.EncodingRaw},
			}}},
			check: func(t *testing.T, c *rfb.Conn, fb *rfb.Framebuffer) {
				w, h := c.Size()
				assert.Equal(t, [2]int{100, 20}, [2]int{w, h})
				assert.Equal(t, image.Rect(0, 0, 100, 20), fb.Image().Rect)
				assert.Equal(t, color.RGBA{R: 0xff, A: 0xff}, fb.Image().RGBAAt(91, 12))
			},
		},
		{
			name:    "desktop size over the limit",
			script:  fbUpdate(rectHeader(0, 0, 0xffff, 0xffff, rfb.EncodingDesktopSize)),
			wantErr: "DesktopSize 65535x65535 exceeds the limit",
		},
		{
			name:    "raw rectangle outside the framebuffer",
			script:  fbUpdate(rectHeader(60, 0, 8, 1, rfb.EncodingRaw)),
			wantErr: "outside the 64x48 framebuffer",
		},
		{
			name:    "encoding not advertised",
			script:  fbUpdate(rectHeader(0, 0, 8, 1, -308)),
			wantErr: "encoding -308, which the client cannot decode",
		},
		{
			name:    "unknown message type",
			script:  []byte{2, 7},
			want:    []rfb.ServerMessage{rfb.Bell{}},
			wantErr: "unknown server message type 7",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := noneConfig()
			cfg.MaxCutText = tc.maxCut
			c, err := scriptedClient(tc.script, cfg)
			require.NoError(t, err)
			fb := rfb.NewFramebuffer(c.Size())
			var got []rfb.ServerMessage
			for {
				msg, err := c.ReadMessage(t.Context(), fb)
				if err != nil {
					if tc.wantErr == "" {
						assert.ErrorIs(t, err, io.EOF)
						assert.ErrorContains(t, err, "rfb: server closed the connection")
					} else {
						assert.ErrorIs(t, err, rfb.ErrProtocol)
						assert.ErrorContains(t, err, tc.wantErr)
					}
					break
				}
				// Copy reused messages before the next read.
				switch m := msg.(type) {
				case *rfb.FramebufferUpdate:
					msg = &rfb.FramebufferUpdate{Rects: append([]rfb.Rectangle(nil), m.Rects...)}
				case *rfb.SetColourMapEntries:
					msg = &rfb.SetColourMapEntries{First: m.First, Colours: append([]rfb.Colour(nil), m.Colours...)}
				}
				got = append(got, msg)
			}
			assert.Equal(t, tc.want, got)
			if tc.check != nil {
				tc.check(t, c, fb)
			}
		})
	}
}

// TestReadMessagePrefixes checks that every proper prefix of a valid
// message fails with an unexpected EOF rather than a message or a hang.
func TestReadMessagePrefixes(t *testing.T) {
	t.Parallel()
	valid := map[string][]byte{
		"raw update":   fbUpdate(append(rectHeader(0, 0, 2, 1, rfb.EncodingRaw), 1, 2, 3, 4, 5, 6, 7, 8)),
		"colour map":   {1, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6},
		"cut text":     cutText(3, "abc"),
		"desktop size": fbUpdate(rectHeader(0, 0, 10, 10, rfb.EncodingDesktopSize)),
	}
	for name, msg := range valid {
		t.Run(name, func(t *testing.T) {
			c, err := scriptedClient(msg, noneConfig())
			require.NoError(t, err)
			_, err = c.ReadMessage(t.Context(), rfb.NewFramebuffer(c.Size()))
			require.NoError(t, err, "the whole message parses")
			for n := 1; n < len(msg); n++ {
				c, err := scriptedClient(msg[:n], noneConfig())
				require.NoError(t, err)
				_, err = c.ReadMessage(t.Context(), rfb.NewFramebuffer(c.Size()))
				assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "prefix of %d bytes", n)
			}
		})
	}
}

// TestPixelFormats sets each pixel format on the in-process server and
// compares the captured frame with the served image, within the
// precision of the format.
func TestPixelFormats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pf   rfb.PixelFormat
	}{
		{"RGBA", rfb.PixelFormatRGBA()},
		{"QEMU BGRX", rfbtest.QEMUPixelFormat()},
		{"32 big-endian XRGB", rfb.PixelFormat{BitsPerPixel: 32, Depth: 24, BigEndian: true, TrueColour: true, RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 16, GreenShift: 8, BlueShift: 0}},
		{"32 odd byte order", rfb.PixelFormat{BitsPerPixel: 32, Depth: 24, TrueColour: true, RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 8, GreenShift: 24, BlueShift: 0}},
		{"32 ten bits", rfb.PixelFormat{BitsPerPixel: 32, Depth: 30, TrueColour: true, RedMax: 1023, GreenMax: 1023, BlueMax: 1023, RedShift: 20, GreenShift: 10, BlueShift: 0}},
		{"16 565 LE", rfb.PixelFormat{BitsPerPixel: 16, Depth: 16, TrueColour: true, RedMax: 31, GreenMax: 63, BlueMax: 31, RedShift: 11, GreenShift: 5, BlueShift: 0}},
		{"16 555 BE", rfb.PixelFormat{BitsPerPixel: 16, Depth: 15, BigEndian: true, TrueColour: true, RedMax: 31, GreenMax: 31, BlueMax: 31, RedShift: 10, GreenShift: 5, BlueShift: 0}},
		{"8 BGR233", rfb.PixelFormat{BitsPerPixel: 8, Depth: 8, TrueColour: true, RedMax: 7, GreenMax: 7, BlueMax: 3, RedShift: 0, GreenShift: 3, BlueShift: 6}},
		{"8 colour map", rfb.PixelFormat{BitsPerPixel: 8, Depth: 8}},
	}
	srv := rfbtest.NewServer(&rfbtest.Config{Width: 40, Height: 30})
	t.Cleanup(srv.Close)
	want := rfbtest.TestPattern(40, 30)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := rfb.Dial(testContext(t), "tcp", srv.Addr, noneConfig())
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetPixelFormat(t.Context(), tc.pf))
			img, err := rfb.Screenshot(testContext(t), c)
			require.NoError(t, err)
			tol := func(max uint16) int { return 255/int(max) + 1 }
			// A colour map of rfbtest's 3-3-2 palette.
			rt, gt, bt := tol(7), tol(7), tol(3)
			if tc.pf.TrueColour {
				rt, gt, bt = tol(tc.pf.RedMax), tol(tc.pf.GreenMax), tol(tc.pf.BlueMax)
			}
			bad := 0
			for y := range 30 {
				for x := range 40 {
					g, w := img.RGBAAt(x, y), want.RGBAAt(x, y)
					if absDiff(g.R, w.R) > rt || absDiff(g.G, w.G) > gt || absDiff(g.B, w.B) > bt || g.A != 0xff {
						bad++
						if bad < 4 {
							t.Errorf("pixel (%d,%d) = %v, want %v", x, y, g, w)
						}
					}
				}
			}
			if tc.pf.BitsPerPixel == 32 && tc.pf.RedMax == 255 {
				assert.Equal(t, want.Pix, img.ToRGBA().Pix, "8-bit channels are exact")
			}
		})
	}
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

// TestClientMessages checks the bytes of every client message as the
// server decodes them.
func TestClientMessages(t *testing.T) {
	t.Parallel()
	got := make(chan *rfbtest.ClientMessage, 16)
	srv := rfbtest.NewServer(&rfbtest.Config{Handler: func(sc *rfbtest.ServerConn) error {
		for {
			m, err := sc.ReadClientMessage()
			if err != nil {
				close(got)
				return nil
			}
			got <- m
		}
	}})
	defer srv.Close()
	c, err := rfb.Dial(testContext(t), "tcp", srv.Addr, noneConfig())
	require.NoError(t, err)
	pf := rfb.PixelFormatRGBA()
	require.NoError(t, c.SetPixelFormat(t.Context(), pf))
	require.NoError(t, c.SetEncodings(t.Context(), rfb.EncodingRaw, rfb.EncodingDesktopSize))
	require.NoError(t, c.RequestUpdate(t.Context(), image.Rect(3, 4, 13, 24), true))
	require.NoError(t, c.KeyEvent(t.Context(), 0xff0d, true))
	require.NoError(t, c.PointerEvent(t.Context(), 5, 300, 200))
	require.NoError(t, c.CutText(t.Context(), "héllo€"))
	assert.Error(t, c.RequestUpdate(t.Context(), image.Rect(-1, 0, 5, 5), false))
	assert.ErrorIs(t, c.SetPixelFormat(t.Context(), rfb.PixelFormat{BitsPerPixel: 24, Depth: 24, TrueColour: true}), rfb.ErrProtocol)
	c.Close()

	want := []*rfbtest.ClientMessage{
		{Type: 0, PixelFormat: pf},
		{Type: 2, Encodings: []rfb.Encoding{0, -223}},
		{Type: 3, Rect: image.Rect(3, 4, 13, 24), Incremental: true},
		{Type: 4, Key: 0xff0d, Down: true},
		{Type: 5, Buttons: 5, X: 300, Y: 200},
		{Type: 6, Text: []byte("h\xe9llo?")},
	}
	var all []*rfbtest.ClientMessage
	for m := range got {
		all = append(all, m)
	}
	assert.Equal(t, want, all)
	assert.Equal(t, pf, c.PixelFormat())
}
