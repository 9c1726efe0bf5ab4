package rfb

import (
	"bufio"
	"context"
	"encoding/binary"
	"image"
	"image/color"
	"io"
)

// Framebuffer is a client-side copy of the server's screen. Pass it to
// Conn.ReadMessage to apply updates.
//
// Its Image keeps pixels in the memory order of the server's pixel format
// when that is one of the two Layouts (QEMU's and TigerVNC's format is
// BGRX; PixelFormatRGBA is RGBX), so Raw rectangles are read straight
// into it with no second pass; any other format is converted as it
// arrives.
type Framebuffer struct {
	img *Image
	// written is set once pixels have been applied: a change of layout
	// must then convert them.
	written bool
	colours []color.RGBA // colour map, for formats without true colour
	row     []byte       // one row of pixels in the wire format
}

// NewFramebuffer returns a black framebuffer of the given size, usually
// Conn.Size().
func NewFramebuffer(width, height int) *Framebuffer {
	fb := &Framebuffer{img: &Image{}}
	fb.resize(width, height)
	return fb
}

// Image returns the framebuffer's image. ReadMessage updates it in
// place: its pixels, its size on a DesktopSize, and its Layout when the
// pixel format changes from BGRX to RGBX or back. Copy it (or use
// ToRGBA) to keep a snapshot.
func (fb *Framebuffer) Image() *Image { return fb.img }

// resize gives the framebuffer a new size. The pixel memory is reused
// when it is large enough, so that a server alternating between sizes
// costs no allocation beyond the largest one (which the connection
// bounds by Config.MaxFramebufferPixels); the content is undefined until
// the server sends it, as after any DesktopSize.
func (fb *Framebuffer) resize(width, height int) {
	img := fb.img
	if img.Pix != nil && img.Rect.Dx() == width && img.Rect.Dy() == height {
		return
	}
	if n := 4 * width * height; cap(img.Pix) >= n && img.Pix != nil {
		img.Pix = img.Pix[:n]
	} else {
		img.Pix = make([]uint8, n)
	}
	img.Stride, img.Rect = 4*width, image.Rect(0, 0, width, height)
}

// setLayout switches the image to layout l, converting the pixels
// already applied (red and blue swap places).
func (fb *Framebuffer) setLayout(l Layout) {
	if fb.img.Layout == l {
		return
	}
	if fb.written {
		swizzle(fb.img.Pix, 2, 1, 0)
	}
	fb.img.Layout = l
}

func (fb *Framebuffer) setColours(first int, colours []Colour) {
	if need := first + len(colours); need > len(fb.colours) {
		fb.colours = append(fb.colours, make([]color.RGBA, need-len(fb.colours))...)
	}
	for i, c := range colours {
		fb.colours[first+i] = color.RGBA{R: uint8(c.R >> 8), G: uint8(c.G >> 8), B: uint8(c.B >> 8), A: 0xff}
	}
}

// readRaw reads a Raw rectangle in format pf from br into the image. The
// caller checked that the rectangle lies inside the framebuffer.
func (fb *Framebuffer) readRaw(br *bufio.Reader, r Rectangle, pf PixelFormat) error {
	img := fb.img
	if r.X+r.Width > img.Rect.Dx() || r.Y+r.Height > img.Rect.Dy() {
		// The framebuffer is not the connection's size: read and drop.
		_, err := br.Discard(r.Width * r.Height * pf.BytesPerPixel())
		return err
	}
	if r.Width == 0 || r.Height == 0 {
		return nil
	}
	if l, ok := layoutOf(pf); ok {
		// The wire format is the image's memory: read straight into
		// it, in one read when the rows are contiguous.
		fb.setLayout(l)
		fb.written = true
		rowBytes := r.Width * 4
		start := r.Y*img.Stride + r.X*4
		if rowBytes == img.Stride {
			_, err := io.ReadFull(br, img.Pix[start:start+r.Height*rowBytes])
			return err
		}
		for y := range r.Height {
			off := start + y*img.Stride
			if _, err := io.ReadFull(br, img.Pix[off:off+rowBytes]); err != nil {
				return err
			}
		}
		return nil
	}
	fb.written = true
	bpp := pf.BytesPerPixel()
	rowBytes := r.Width * bpp
	if cap(fb.row) < rowBytes {
		fb.row = make([]byte, rowBytes)
	}
	row := fb.row[:rowBytes]
	for y := range r.Height {
		if _, err := io.ReadFull(br, row); err != nil {
			return err
		}
		off := (r.Y+y)*img.Stride + r.X*4
		fb.decodeRow(img.Pix[off:off+r.Width*4], row, pf)
	}
	return nil
}

// decodeRow converts one row of pixels in format pf to the image's
// layout.
func (fb *Framebuffer) decodeRow(dst, src []byte, pf PixelFormat) {
	lr, lg, lb := fb.img.Layout.offsets()
	if ro, gO, bo, ok := byteOffsets(pf); ok {
		// 32-bit pixels with whole-byte colours in another order.
		for x := 0; 4*x+4 <= len(src); x++ {
			s, d := src[4*x:4*x+4:4*x+4], dst[4*x:4*x+4:4*x+4]
			d[lr], d[lg], d[lb] = s[ro], s[gO], s[bo]
		}
		return
	}
	bpp := pf.BytesPerPixel()
	for x := 0; x*bpp < len(src); x++ {
		p := src[x*bpp : x*bpp+bpp]
		var v uint32
		switch bpp {
		case 1:
			v = uint32(p[0])
		case 2:
			if pf.BigEndian {
				v = uint32(binary.BigEndian.Uint16(p))
			} else {
				v = uint32(binary.LittleEndian.Uint16(p))
			}
		case 4:
			if pf.BigEndian {
				v = binary.BigEndian.Uint32(p)
			} else {
				v = binary.LittleEndian.Uint32(p)
			}
		}
		d := dst[4*x : 4*x+4 : 4*x+4]
		if pf.TrueColour {
			d[lr] = scale(v>>pf.RedShift, pf.RedMax)
			d[lg] = scale(v>>pf.GreenShift, pf.GreenMax)
			d[lb] = scale(v>>pf.BlueShift, pf.BlueMax)
			continue
		}
		var c color.RGBA
		if int(v) < len(fb.colours) {
			c = fb.colours[v]
		}
		d[lr], d[lg], d[lb] = c.R, c.G, c.B
	}
}

// scale maps an intensity in [0, max] to [0, 255].
func scale(v uint32, max uint16) uint8 {
	if max == 0 {
		return 0
	}
	v &= uint32(max)
	return uint8((v*255 + uint32(max)/2) / uint32(max))
}

// Screenshot reads one complete frame from c and returns it. It
// advertises Raw and DesktopSize, requests the whole screen and applies
// updates until every pixel has arrived (by area: servers send each pixel
// of a full update once). Bell, clipboard and colour map messages that
// arrive meanwhile are applied or ignored.
//
// When the server's own pixel format is not one of the Layouts and the
// caller has not chosen one with SetPixelFormat, Screenshot first asks
// for PixelFormatRGBA, so that pixels need no conversion.
//
// ctx bounds the wait: when it is done, the read in progress is
// interrupted and Screenshot returns ctx's error. Do not use c from
// another goroutine for reading meanwhile.
func Screenshot(ctx context.Context, c *Conn) (*Image, error) {
	if _, ok := layoutOf(c.PixelFormat()); !ok && !c.pixelFormatSet() {
		// The server's own format would need converting: ask for
		// one that is the image's memory order.
		if err := c.SetPixelFormat(ctx, PixelFormatRGBA()); err != nil {
			return nil, err
		}
	}
	if err := c.SetEncodings(ctx, EncodingRaw, EncodingDesktopSize); err != nil {
		return nil, err
	}
	w, h := c.Size()
	fb := NewFramebuffer(w, h)
	if err := fb.Capture(ctx, c); err != nil {
		return nil, err
	}
	return fb.Image(), nil
}

// Capture requests a full update of the screen and applies messages from
// c to fb until every pixel has been received once. The caller has
// advertised the encodings (at least Raw) with SetEncodings. ctx bounds
// the wait, as for Screenshot.
func (fb *Framebuffer) Capture(ctx context.Context, c *Conn) error {
	w, h := c.Size()
	fb.resize(w, h)
	if w == 0 || h == 0 {
		return nil
	}
	if err := c.RequestUpdate(ctx, image.Rect(0, 0, w, h), false); err != nil {
		return err
	}
	covered := 0
	for covered < w*h {
		msg, err := c.ReadMessage(ctx, fb)
		if err != nil {
			return err
		}
		u, ok := msg.(*FramebufferUpdate)
		if !ok {
			continue
		}
		if nw, nh := c.Size(); nw != w || nh != h {
			// A new size (the last of the update's DesktopSize
			// rectangles): start over with a full request.
			w, h = nw, nh
			covered = 0
			if w == 0 || h == 0 {
				return nil
			}
			if err := c.RequestUpdate(ctx, image.Rect(0, 0, w, h), false); err != nil {
				return err
			}
			continue
		}
		for _, r := range u.Rects {
			if r.Encoding == EncodingRaw {
				covered += r.Width * r.Height
			}
		}
	}
	return nil
}
