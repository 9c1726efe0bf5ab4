package rfb

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"io"
	"time"
)

// Framebuffer is a client-side copy of the server's screen as an RGBA
// image. Pass it to Conn.ReadMessage to apply updates.
type Framebuffer struct {
	img     *image.RGBA
	colours []color.RGBA // colour map, for formats without true colour
	row     []byte       // one row of pixels in the wire format
}

// NewFramebuffer returns a black framebuffer of the given size, usually
// Conn.Size(). Its alpha channel is opaque.
func NewFramebuffer(width, height int) *Framebuffer {
	fb := &Framebuffer{}
	fb.resize(width, height)
	return fb
}

// Image returns the framebuffer's image. ReadMessage updates it in place
// and replaces it on a DesktopSize change; copy it to keep a snapshot.
func (fb *Framebuffer) Image() *image.RGBA { return fb.img }

// resize gives the framebuffer a new size. The pixel memory is reused
// when it is large enough, so that a server alternating between sizes
// costs no allocation beyond the largest one (which the connection
// bounds by Config.MaxFramebufferPixels); the content is undefined until
// the server sends it, as after any DesktopSize.
func (fb *Framebuffer) resize(width, height int) {
	if fb.img != nil && fb.img.Rect.Dx() == width && fb.img.Rect.Dy() == height {
		return
	}
	n := 4 * width * height
	if fb.img != nil && cap(fb.img.Pix) >= n {
		// Every alpha byte of the old memory is already opaque.
		fb.img = &image.RGBA{Pix: fb.img.Pix[:n], Stride: 4 * width, Rect: image.Rect(0, 0, width, height)}
		return
	}
	fb.img = image.NewRGBA(image.Rect(0, 0, width, height))
	for i := 3; i < len(fb.img.Pix); i += 4 {
		fb.img.Pix[i] = 0xff
	}
}

func (fb *Framebuffer) setColours(first int, colours []Colour) {
	if need := first + len(colours); need > len(fb.colours) {
		fb.colours = append(fb.colours, make([]color.RGBA, need-len(fb.colours))...)
	}
	for i, c := range colours {
		fb.colours[first+i] = color.RGBA{R: uint8(c.R >> 8), G: uint8(c.G >> 8), B: uint8(c.B >> 8), A: 0xff}
	}
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

// readRaw reads a Raw rectangle in format pf from br into the image. The
// caller checked that the rectangle lies inside the framebuffer.
func (fb *Framebuffer) readRaw(br *bufio.Reader, r Rectangle, pf PixelFormat) error {
	img := fb.img
	if img == nil || r.X+r.Width > img.Rect.Dx() || r.Y+r.Height > img.Rect.Dy() {
		// The framebuffer is not the connection's size: read and drop.
		_, err := br.Discard(r.Width * r.Height * pf.BytesPerPixel())
		return err
	}
	if r.Width == 0 || r.Height == 0 {
		return nil
	}
	if ro, gO, bo, ok := byteOffsets(pf); ok {
		// 32-bit pixels are the size of RGBA ones: read them straight
		// into the image and rearrange them in place.
		rowBytes := r.Width * 4
		start := r.Y*img.Stride + r.X*4
		if rowBytes == img.Stride {
			// Full-width rows are contiguous: read as much as the
			// transport delivers at once, and convert each piece
			// while it is still in cache. Reads are never smaller
			// than the transport's, so there are as many as for a
			// plain io.ReadFull.
			return readSwizzle(br, img.Pix[start:start+r.Height*rowBytes], ro, gO, bo)
		}
		for y := range r.Height {
			off := start + y*img.Stride
			px := img.Pix[off : off+rowBytes]
			if _, err := io.ReadFull(br, px); err != nil {
				return err
			}
			swizzle(px, ro, gO, bo)
		}
		return nil
	}
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

// readSwizzle fills px from br and converts it with swizzle as it
// arrives.
func readSwizzle(br *bufio.Reader, px []byte, ro, gO, bo int) error {
	got, done := 0, 0
	for got < len(px) {
		n, err := br.Read(px[got:])
		got += n
		if whole := got &^ 3; whole > done {
			swizzle(px[done:whole], ro, gO, bo)
			done = whole
		}
		if err != nil && got < len(px) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// decodeRow converts one row of pixels in format pf to RGBA.
func (fb *Framebuffer) decodeRow(dst, src []byte, pf PixelFormat) {
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
			d[0] = scale(v>>pf.RedShift, pf.RedMax)
			d[1] = scale(v>>pf.GreenShift, pf.GreenMax)
			d[2] = scale(v>>pf.BlueShift, pf.BlueMax)
			d[3] = 0xff
			continue
		}
		var c color.RGBA
		if int(v) < len(fb.colours) {
			c = fb.colours[v]
		}
		d[0], d[1], d[2], d[3] = c.R, c.G, c.B, 0xff
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
// ctx bounds the wait: when it is done, the read in progress is
// interrupted and Screenshot returns ctx's error. Do not use c from
// another goroutine for reading meanwhile.
func Screenshot(ctx context.Context, c *Conn) (*image.RGBA, error) {
	if err := c.SetEncodings(EncodingRaw, EncodingDesktopSize); err != nil {
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
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rfb: capture: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.raw.SetReadDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			// The deadline was set: clear it, so that the
			// connection stays usable (a TLS read timeout is
			// recoverable).
			_ = c.raw.SetReadDeadline(time.Time{})
		}
	}()
	w, h := c.Size()
	fb.resize(w, h)
	if w == 0 || h == 0 {
		return nil
	}
	if err := c.RequestUpdate(image.Rect(0, 0, w, h), false); err != nil {
		return err
	}
	covered := 0
	for covered < w*h {
		msg, err := c.ReadMessage(fb)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("rfb: capture: %w (%w)", ctx.Err(), err)
			}
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
			if err := c.RequestUpdate(image.Rect(0, 0, w, h), false); err != nil {
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
