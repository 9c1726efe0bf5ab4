package rfb

import (
	"image"
	"image/color"
)

// Layout is the memory order of the four bytes of a pixel in an Image:
// three colour bytes and one padding byte, which is ignored.
type Layout uint8

const (
	// LayoutRGBX is red, green, blue, padding: the Raw pixels of
	// PixelFormatRGBA, and the memory order of image.RGBA.
	LayoutRGBX Layout = iota
	// LayoutBGRX is blue, green, red, padding: the Raw pixels of the
	// format QEMU and TigerVNC announce on little-endian hosts (32 bpp,
	// little-endian, red shift 16, green 8, blue 0).
	LayoutBGRX
)

// String returns "RGBX" or "BGRX".
func (l Layout) String() string {
	if l == LayoutBGRX {
		return "BGRX"
	}
	return "RGBX"
}

// PixelFormat returns the wire format whose Raw pixels are l's memory
// order: 32 bits per pixel, depth 24, little-endian true colour.
func (l Layout) PixelFormat() PixelFormat {
	pf := PixelFormat{
		BitsPerPixel: 32, Depth: 24, TrueColour: true,
		RedMax: 255, GreenMax: 255, BlueMax: 255,
		RedShift: 0, GreenShift: 8, BlueShift: 16,
	}
	if l == LayoutBGRX {
		pf.RedShift, pf.BlueShift = 16, 0
	}
	return pf
}

// offsets returns where red, green and blue sit in a pixel of layout l.
func (l Layout) offsets() (r, g, b int) {
	if l == LayoutBGRX {
		return 2, 1, 0
	}
	return 0, 1, 2
}

// layoutOf returns the layout whose memory order is pf's Raw pixels, if
// there is one.
func layoutOf(pf PixelFormat) (Layout, bool) {
	r, g, b, ok := byteOffsets(pf)
	switch {
	case !ok:
		return 0, false
	case r == 0 && g == 1 && b == 2:
		return LayoutRGBX, true
	case r == 2 && g == 1 && b == 0:
		return LayoutBGRX, true
	}
	return 0, false
}

// byteOffsets returns where red, green and blue sit in a 32-bit pixel
// when each is a whole byte (max 255, shift a multiple of 8).
func byteOffsets(pf PixelFormat) (r, g, b int, ok bool) {
	if pf.BitsPerPixel != 32 || !pf.TrueColour || pf.RedMax != 255 || pf.GreenMax != 255 || pf.BlueMax != 255 {
		return 0, 0, 0, false
	}
	off := func(shift uint8) (int, bool) {
		if shift%8 != 0 || shift > 24 {
			return 0, false
		}
		if pf.BigEndian {
			return 3 - int(shift/8), true
		}
		return int(shift / 8), true
	}
	r, ok1 := off(pf.RedShift)
	g, ok2 := off(pf.GreenShift)
	b, ok3 := off(pf.BlueShift)
	return r, g, b, ok1 && ok2 && ok3
}

// Image is an in-memory image of 32-bit pixels in the memory order of a
// VNC server's Raw rectangles, RGBX or BGRX: the Framebuffer reads Raw
// pixels straight into it, with no conversion pass. The padding byte is
// ignored, so every pixel is opaque.
//
// It implements image.Image (and Opaque and SubImage, as the image
// package's types do), so image/png and image/draw take it as it is;
// ToRGBA converts it to an *image.RGBA for code that needs that type.
type Image struct {
	// Pix holds the pixels, 4 bytes each, row after row.
	Pix []uint8
	// Stride is the distance in bytes between vertically adjacent pixels.
	Stride int
	// Rect is the image's bounds.
	Rect image.Rectangle
	// Layout is the order of the bytes of a pixel.
	Layout Layout
}

// NewImage returns a black image with the given bounds and layout.
func NewImage(r image.Rectangle, l Layout) *Image {
	return &Image{Pix: make([]uint8, 4*r.Dx()*r.Dy()), Stride: 4 * r.Dx(), Rect: r, Layout: l}
}

// ColorModel returns color.RGBAModel.
func (p *Image) ColorModel() color.Model { return color.RGBAModel }

// Bounds returns p.Rect.
func (p *Image) Bounds() image.Rectangle { return p.Rect }

// At returns the colour of the pixel at (x, y), a color.RGBA.
func (p *Image) At(x, y int) color.Color { return p.RGBAAt(x, y) }

// RGBAAt returns the colour of the pixel at (x, y), opaque; the zero
// color.RGBA outside the bounds.
func (p *Image) RGBAAt(x, y int) color.RGBA {
	if !(image.Point{x, y}.In(p.Rect)) {
		return color.RGBA{}
	}
	i := p.PixOffset(x, y)
	s := p.Pix[i : i+4 : i+4]
	if p.Layout == LayoutBGRX {
		return color.RGBA{R: s[2], G: s[1], B: s[0], A: 0xff}
	}
	return color.RGBA{R: s[0], G: s[1], B: s[2], A: 0xff}
}

// PixOffset returns the index of the first byte of the pixel at (x, y) in
// Pix.
func (p *Image) PixOffset(x, y int) int {
	return (y-p.Rect.Min.Y)*p.Stride + (x-p.Rect.Min.X)*4
}

// Opaque returns true: the padding byte is not alpha.
func (p *Image) Opaque() bool { return true }

// SubImage returns the part of p inside r, sharing its pixels.
func (p *Image) SubImage(r image.Rectangle) image.Image {
	r = r.Intersect(p.Rect)
	if r.Empty() {
		return &Image{Layout: p.Layout}
	}
	i := p.PixOffset(r.Min.X, r.Min.Y)
	return &Image{Pix: p.Pix[i:], Stride: p.Stride, Rect: r, Layout: p.Layout}
}

// ToRGBA returns a copy of p as an *image.RGBA with opaque alpha, for
// code that needs that type. It converts 8 bytes at a time; the
// Framebuffer never needs it.
func (p *Image) ToRGBA() *image.RGBA {
	dst := image.NewRGBA(p.Rect)
	ro, gO, bo := p.Layout.offsets()
	w := 4 * p.Rect.Dx()
	for y := range p.Rect.Dy() {
		swizzleCopy(dst.Pix[y*dst.Stride:y*dst.Stride+w], p.Pix[y*p.Stride:y*p.Stride+w], ro, gO, bo)
	}
	return dst
}
