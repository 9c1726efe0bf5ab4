package rfb_test

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

// TestImage checks the image type over each layout against image.RGBA:
// At, Bounds, SubImage, ToRGBA, and that image/png and image/draw take it
// as it is, with the padding byte never seen as alpha.
func TestImage(t *testing.T) {
	t.Parallel()
	want := rfbtest.TestPattern(13, 7)
	for _, l := range []rfb.Layout{rfb.LayoutRGBX, rfb.LayoutBGRX} {
		t.Run(l.String(), func(t *testing.T) {
			img := rfb.NewImage(want.Rect, l)
			pix := rfbtest.AppendPixels(nil, want, want.Rect, l.PixelFormat())
			for i := 3; i < len(pix); i += 4 {
				pix[i] = 0x5a // padding, not alpha
			}
			copy(img.Pix, pix)

			assert.Equal(t, want.Rect, img.Bounds())
			assert.Equal(t, color.RGBAModel, img.ColorModel())
			assert.True(t, img.Opaque())
			for y := range 7 {
				for x := range 13 {
					require.Equal(t, want.RGBAAt(x, y), img.At(x, y), "(%d,%d)", x, y)
				}
			}
			assert.Equal(t, color.RGBA{}, img.RGBAAt(13, 0), "outside")
			assert.Equal(t, want.Pix, img.ToRGBA().Pix)

			sub := img.SubImage(image.Rect(3, 2, 9, 6)).(*rfb.Image)
			assert.Equal(t, image.Rect(3, 2, 9, 6), sub.Bounds())
			assert.Equal(t, want.RGBAAt(5, 4), sub.RGBAAt(5, 4))
			assert.Equal(t, want.SubImage(sub.Rect).(*image.RGBA).RGBAAt(8, 5), sub.ToRGBA().RGBAAt(8, 5))
			assert.True(t, img.SubImage(image.Rect(20, 20, 30, 30)).Bounds().Empty())

			var buf bytes.Buffer
			require.NoError(t, png.Encode(&buf, img))
			decoded, err := png.Decode(&buf)
			require.NoError(t, err)
			drawn := image.NewRGBA(decoded.Bounds())
			draw.Draw(drawn, drawn.Rect, decoded, image.Point{}, draw.Src)
			assert.Equal(t, want.Pix, drawn.Pix, "PNG round trip")
		})
	}
}

// TestFramebufferLayoutFollowsPixelFormat checks that the framebuffer
// takes the layout of the server's format without converting Raw pixels,
// converts what it holds when the format switches between BGRX and RGBX,
// and keeps its layout for formats that need converting anyway.
func TestFramebufferLayoutFollowsPixelFormat(t *testing.T) {
	t.Parallel()
	const w, h = 8, 4
	pattern := rfbtest.TestPattern(w, h)
	srv := rfbtest.NewServer(&rfbtest.Config{Width: w, Height: h, Image: pattern})
	defer srv.Close()
	c, err := rfb.Dial(testContext(t), "tcp", srv.Addr, noneConfig())
	require.NoError(t, err)
	defer c.Close()
	fb := rfb.NewFramebuffer(c.Size())
	require.NoError(t, c.SetEncodings(t.Context(), rfb.EncodingRaw))

	steps := []struct {
		name       string
		pf         rfb.PixelFormat
		rect       image.Rectangle // the part requested
		wantLayout rfb.Layout
	}{
		{"QEMU's BGRX", rfbtest.QEMUPixelFormat(), image.Rect(0, 0, w, h), rfb.LayoutBGRX},
		{"RGBX, left half only", rfb.PixelFormatRGBA(), image.Rect(0, 0, w/2, h), rfb.LayoutRGBX},
		{"16 bits keep RGBX", rfb.PixelFormat{BitsPerPixel: 16, Depth: 16, TrueColour: true, RedMax: 31, GreenMax: 63, BlueMax: 31, RedShift: 11, GreenShift: 5}, image.Rect(0, 0, 1, 1), rfb.LayoutRGBX},
		{"back to BGRX, right half only", rfbtest.QEMUPixelFormat(), image.Rect(w/2, 0, w, h), rfb.LayoutBGRX},
	}
	for _, st := range steps {
		require.NoError(t, c.SetPixelFormat(t.Context(), st.pf), st.name)
		require.NoError(t, c.RequestUpdate(t.Context(), st.rect, false), st.name)
		_, err := c.ReadMessage(t.Context(), fb)
		require.NoError(t, err, st.name)
		assert.Equal(t, st.wantLayout, fb.Image().Layout, st.name)
	}
	// The 16-bit pixel at (0,0) is approximate; everything else was
	// received in 8-bit channels, some of it before a layout switch.
	got := fb.Image().ToRGBA()
	got.SetRGBA(0, 0, pattern.RGBAAt(0, 0))
	assert.Equal(t, pattern.Pix, got.Pix)
}
