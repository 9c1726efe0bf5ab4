package rfb_test

import (
	"fmt"
	"image"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

// TestRawRectangles applies Raw rectangles in each pixel format the
// decoder has a separate path for, at the edges and inside a framebuffer
// whose rows are not a multiple of any kernel's block, delivered in one
// write, in writes that split pixels and in writes of a few rows. Each
// update paints the whole frame with rfbtest's pattern and then one
// rectangle with random pixels (and random padding bytes, which must not
// leak into alpha); the result must be the served images, opaque, with
// nothing outside the rectangle touched.
func TestRawRectangles(t *testing.T) {
	t.Parallel()
	const w, h = 67, 19
	formats := []struct {
		name string
		pf   rfb.PixelFormat
	}{
		{"RGBX LE (RGBA)", rfb.PixelFormatRGBA()},
		{"BGRX LE (QEMU)", rfbtest.QEMUPixelFormat()},
		{"RGBX BE", byteFormat(true, 24, 16, 8)},
		{"BGRX BE", byteFormat(true, 8, 16, 24)},
		{"XRGB BE", byteFormat(true, 16, 8, 0)},
		{"XBGR LE", byteFormat(false, 8, 16, 24)},
		{"16 565 LE", rfb.PixelFormat{BitsPerPixel: 16, Depth: 16, TrueColour: true, RedMax: 31, GreenMax: 63, BlueMax: 31, RedShift: 11, GreenShift: 5}},
		{"8 BGR233", rfb.PixelFormat{BitsPerPixel: 8, Depth: 8, TrueColour: true, RedMax: 7, GreenMax: 7, BlueMax: 3, GreenShift: 3, BlueShift: 6}},
	}
	rects := []image.Rectangle{
		image.Rect(0, 0, w, h),         // the whole frame
		image.Rect(0, 5, w, 12),        // full rows, not at the top
		image.Rect(3, 2, 40, 13),       // odd width, not at x=0
		image.Rect(50, 0, w, h),        // up to the right edge
		image.Rect(1, 7, 18, 8),        // one row
		image.Rect(w-1, h-1, w, h),     // the last pixel
		image.Rect(0, 0, 1, h),         // the first column
		image.Rect(2, 3, 2+33, 3+1),    // 33 pixels: a kernel block and one
		image.Rect(0, 0, 0, 0),         // empty
		image.Rect(9, 4, 9+16+16, 4+3), // exactly two SSE2 blocks per row
	}
	writes := []struct {
		name  string
		chunk int
	}{{"one write", 1 << 30}, {"7-byte writes", 7}, {"1000-byte writes", 1000}}

	background := rfbtest.TestPattern(w, h)
	for fi, f := range formats {
		for ri, r := range rects {
			for wi, wr := range writes {
				t.Run(fmt.Sprintf("%s/%v/%s", f.name, r, wr.name), func(t *testing.T) {
					t.Parallel()
					rng := rand.New(rand.NewPCG(uint64(fi), uint64(ri<<8|wi)))
					fg := image.NewRGBA(image.Rect(0, 0, w, h))
					for i := range fg.Pix {
						fg.Pix[i] = byte(rng.Uint32())
					}
					for i := 3; i < len(fg.Pix); i += 4 {
						fg.Pix[i] = 0xff
					}
					pf := f.pf
					full := image.Rect(0, 0, w, h)
					fgPixels := rfbtest.AppendPixels(nil, fg, r, pf)
					scramblePadding(fgPixels, pf, rng)
					msg := fbUpdate(
						append(rectHeader(0, 0, w, h, rfb.EncodingRaw), rfbtest.AppendPixels(nil, background, full, pf)...),
						append(rectHeader(r.Min.X, r.Min.Y, r.Dx(), r.Dy(), rfb.EncodingRaw), fgPixels...),
					)
					c := pipeClient(t, w, h, pf, msg, wr.chunk)
					fb := rfb.NewFramebuffer(w, h)
					_, err := c.ReadMessage(t.Context(), fb)
					require.NoError(t, err)

					tol := func(max uint16) int { return 255/int(max) + 1 }
					exact := pf.BitsPerPixel == 32
					bad := 0
					for y := range h {
						for x := range w {
							want := background.RGBAAt(x, y)
							if image.Pt(x, y).In(r) {
								want = fg.RGBAAt(x, y)
							}
							got := fb.Image().RGBAAt(x, y)
							ok := got == want
							if !exact {
								ok = absDiff(got.R, want.R) <= tol(pf.RedMax) && absDiff(got.G, want.G) <= tol(pf.GreenMax) &&
									absDiff(got.B, want.B) <= tol(pf.BlueMax) && got.A == 0xff
							}
							if !ok {
								bad++
								if bad <= 3 {
									t.Errorf("pixel (%d,%d) = %v, want %v", x, y, got, want)
								}
							}
						}
					}
					if bad > 3 {
						t.Errorf("%d pixels wrong in all", bad)
					}
				})
			}
		}
	}
}

// byteFormat is 32-bit true colour with 8-bit channels at the given
// shifts.
func byteFormat(bigEndian bool, red, green, blue uint8) rfb.PixelFormat {
	return rfb.PixelFormat{
		BitsPerPixel: 32, Depth: 24, BigEndian: bigEndian, TrueColour: true,
		RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: red, GreenShift: green, BlueShift: blue,
	}
}

// scramblePadding sets the unused byte of each 32-bit pixel with 8-bit
// channels to random values other than 0xff.
func scramblePadding(px []byte, pf rfb.PixelFormat, rng *rand.Rand) {
	if pf.BitsPerPixel != 32 || pf.RedMax != 255 {
		return
	}
	off := func(shift uint8) int {
		if pf.BigEndian {
			return 3 - int(shift/8)
		}
		return int(shift / 8)
	}
	pad := 6 - off(pf.RedShift) - off(pf.GreenShift) - off(pf.BlueShift)
	for i := pad; i < len(px); i += 4 {
		px[i] = byte(rng.IntN(0xff))
	}
}
