package rfb

import (
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"io"
)

// Encoding is an RFB encoding or pseudo-encoding number (S32).
type Encoding int32

// Encodings this package decodes. ReadMessage ends the session on any
// other, so advertise only these with SetEncodings unless Relay is used.
const (
	EncodingRaw Encoding = 0
	// EncodingDesktopSize is the pseudo-encoding announcing a new
	// framebuffer size (its rectangle's width and height), with no
	// payload.
	EncodingDesktopSize Encoding = -223
)

// Client-to-server message types.
const (
	msgSetPixelFormat           = 0
	msgSetEncodings             = 2
	msgFramebufferUpdateRequest = 3
	msgKeyEvent                 = 4
	msgPointerEvent             = 5
	msgClientCutText            = 6
)

// Server-to-client message types.
const (
	msgFramebufferUpdate   = 0
	msgSetColourMapEntries = 1
	msgBell                = 2
	msgServerCutText       = 3
)

// SetPixelFormat asks the server to send pixels in pf from now on. Do not
// call it while an update request is outstanding: a server may answer
// that request in either format.
func (c *Conn) SetPixelFormat(ctx context.Context, pf PixelFormat) error {
	if err := pf.Validate(); err != nil {
		return fmt.Errorf("rfb: SetPixelFormat: %w", err)
	}
	c.mu.Lock()
	c.pf, c.pfSet = pf, true
	c.mu.Unlock()
	return c.write(ctx, "SetPixelFormat", func(b []byte) []byte {
		b = append(b, msgSetPixelFormat, 0, 0, 0)
		b, _ = pf.AppendBinary(b)
		return b
	})
}

// SetEncodings tells the server which encodings the client accepts, in
// order of preference.
func (c *Conn) SetEncodings(ctx context.Context, encodings ...Encoding) error {
	if len(encodings) > 0xffff {
		return fmt.Errorf("rfb: SetEncodings: %d encodings, at most 65535", len(encodings))
	}
	return c.write(ctx, "SetEncodings", func(b []byte) []byte {
		b = append(b, msgSetEncodings, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(len(encodings)))
		for _, e := range encodings {
			b = binary.BigEndian.AppendUint32(b, uint32(e))
		}
		return b
	})
}

// RequestUpdate sends a FramebufferUpdateRequest for r. An incremental
// request is answered only when something in r changes; a full one
// always.
func (c *Conn) RequestUpdate(ctx context.Context, r image.Rectangle, incremental bool) error {
	if r.Min.X < 0 || r.Min.Y < 0 || r.Max.X > 0xffff || r.Max.Y > 0xffff || r.Empty() {
		return fmt.Errorf("rfb: RequestUpdate: rectangle %v out of range", r)
	}
	return c.write(ctx, "FramebufferUpdateRequest", func(b []byte) []byte {
		b = append(b, msgFramebufferUpdateRequest, boolByte(incremental))
		b = binary.BigEndian.AppendUint16(b, uint16(r.Min.X))
		b = binary.BigEndian.AppendUint16(b, uint16(r.Min.Y))
		b = binary.BigEndian.AppendUint16(b, uint16(r.Dx()))
		return binary.BigEndian.AppendUint16(b, uint16(r.Dy()))
	})
}

// KeyEvent presses (down) or releases an X11 keysym.
func (c *Conn) KeyEvent(ctx context.Context, keysym uint32, down bool) error {
	return c.write(ctx, "KeyEvent", func(b []byte) []byte {
		b = append(b, msgKeyEvent, boolByte(down), 0, 0)
		return binary.BigEndian.AppendUint32(b, keysym)
	})
}

// PointerEvent moves the pointer to (x, y) with the buttons in mask
// pressed (bit 0 is the left button).
func (c *Conn) PointerEvent(ctx context.Context, mask uint8, x, y uint16) error {
	return c.write(ctx, "PointerEvent", func(b []byte) []byte {
		b = append(b, msgPointerEvent, mask)
		b = binary.BigEndian.AppendUint16(b, x)
		return binary.BigEndian.AppendUint16(b, y)
	})
}

// CutText sends clipboard text (ClientCutText). RFB carries Latin-1:
// characters outside it are sent as '?'.
func (c *Conn) CutText(ctx context.Context, text string) error {
	latin1 := make([]byte, 0, len(text))
	for _, r := range text {
		if r > 0xff {
			r = '?'
		}
		latin1 = append(latin1, byte(r))
	}
	if uint64(len(latin1)) > 0x7fffffff {
		return fmt.Errorf("rfb: CutText: %d bytes is too long", len(latin1))
	}
	return c.write(ctx, "ClientCutText", func(b []byte) []byte {
		b = append(b, msgClientCutText, 0, 0, 0)
		b = binary.BigEndian.AppendUint32(b, uint32(len(latin1)))
		return append(b, latin1...)
	})
}

// ServerMessage is a message from the server: *FramebufferUpdate,
// *SetColourMapEntries, Bell or *ServerCutText.
type ServerMessage interface {
	serverMessage()
}

// FramebufferUpdate lists the rectangles of one update. The pixels went
// to the Framebuffer passed to ReadMessage.
type FramebufferUpdate struct {
	Rects []Rectangle
}

// Rectangle is the header of one rectangle of a FramebufferUpdate.
type Rectangle struct {
	X, Y, Width, Height int
	Encoding            Encoding
}

// Bounds returns the rectangle as an image.Rectangle.
func (r Rectangle) Bounds() image.Rectangle {
	return image.Rect(r.X, r.Y, r.X+r.Width, r.Y+r.Height)
}

// SetColourMapEntries sets colour map entries First to
// First+len(Colours)-1, for pixel formats without true colour.
type SetColourMapEntries struct {
	First   int
	Colours []Colour
}

// Colour is a colour map entry, 16 bits per channel.
type Colour struct{ R, G, B uint16 }

// Bell is the server ringing the bell.
type Bell struct{}

// ServerCutText is clipboard text from the server, in Latin-1.
type ServerCutText struct {
	Text []byte
	// Truncated is set when the server sent more than Config.MaxCutText
	// bytes; the rest was read and dropped.
	Truncated bool
}

func (*FramebufferUpdate) serverMessage()   {}
func (*SetColourMapEntries) serverMessage() {}
func (Bell) serverMessage()                 {}
func (*ServerCutText) serverMessage()       {}

// ReadMessage reads the next message from the server. The pixels of a
// FramebufferUpdate are applied to fb, or discarded when fb is nil; so
// is a colour map. The returned *FramebufferUpdate and
// *SetColourMapEntries are reused by the next call.
//
// Only Raw rectangles and the DesktopSize pseudo-encoding are decoded.
// An unknown message type or encoding, or a rectangle outside the
// framebuffer, ends the session with an error wrapping ErrProtocol: RFB
// has no framing to skip what it cannot parse.
//
// It blocks until a message arrives, ctx is done, the read deadline
// passes (see SetDeadline) or Close is called from another goroutine.
// When ctx or the deadline interrupts the wait for a message, the
// connection stays usable; when it interrupts a message half read, or
// after any other error inside a message, the stream is out of step and
// every later call returns the same error.
func (c *Conn) ReadMessage(ctx context.Context, fb *Framebuffer) (ServerMessage, error) {
	if c.rerr != nil {
		return nil, c.rerr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rfb: reading a server message: %w", err)
	}
	stop := c.dl.watch(ctx, false)
	msg, started, err := c.readMessage(fb)
	if stop() && err != nil {
		err = fmt.Errorf("rfb: reading a server message: %w (%w)", ctx.Err(), err)
	}
	if err != nil && started {
		c.rerr = err
	}
	return msg, err
}

// readMessage reads one message; started reports whether its first byte
// was consumed.
func (c *Conn) readMessage(fb *Framebuffer) (msg ServerMessage, started bool, err error) {
	t, err := c.br.ReadByte()
	if err != nil {
		return nil, false, c.readError("server message", err)
	}
	switch t {
	case msgFramebufferUpdate:
		msg, err = c.readFramebufferUpdate(fb)
	case msgSetColourMapEntries:
		msg, err = c.readColourMap(fb)
	case msgBell:
		msg = Bell{}
	case msgServerCutText:
		msg, err = c.readCutText()
	default:
		err = protocolError("unknown server message type %d", t)
	}
	return msg, true, err
}

// readError is readError for an established connection, where EOF is
// the server closing it.
func (c *Conn) readError(what string, err error) error {
	if err == io.EOF {
		return fmt.Errorf("rfb: server closed the connection: %w", err)
	}
	return readError(what, err)
}

func (c *Conn) readFull(n int, what string) ([]byte, error) {
	if cap(c.scratch) < n {
		c.scratch = make([]byte, n)
	}
	b := c.scratch[:n]
	if _, err := io.ReadFull(c.br, b); err != nil {
		return nil, readError(what, err)
	}
	return b, nil
}

func (c *Conn) readFramebufferUpdate(fb *Framebuffer) (ServerMessage, error) {
	h, err := c.readFull(3, "FramebufferUpdate")
	if err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(h[1:]))
	u := &c.update
	u.Rects = u.Rects[:0]
	pf := c.PixelFormat()
	// A size change takes effect only when pixels need it or when the
	// update ends, so an update announcing many sizes applies one: a
	// hostile server cannot make the client allocate a framebuffer per
	// rectangle.
	var resize struct {
		pending       bool
		width, height int
	}
	apply := func() {
		if !resize.pending {
			return
		}
		resize.pending = false
		c.mu.Lock()
		c.width, c.height = resize.width, resize.height
		c.mu.Unlock()
		if fb != nil {
			fb.resize(resize.width, resize.height)
		}
	}
	for range n {
		h, err := c.readFull(12, "rectangle header")
		if err != nil {
			return nil, err
		}
		r := Rectangle{
			X:        int(binary.BigEndian.Uint16(h[0:])),
			Y:        int(binary.BigEndian.Uint16(h[2:])),
			Width:    int(binary.BigEndian.Uint16(h[4:])),
			Height:   int(binary.BigEndian.Uint16(h[6:])),
			Encoding: Encoding(int32(binary.BigEndian.Uint32(h[8:]))),
		}
		switch r.Encoding {
		case EncodingRaw:
			apply()
			w, hgt := c.Size()
			if r.X+r.Width > w || r.Y+r.Height > hgt {
				return nil, protocolError("Raw rectangle %v outside the %dx%d framebuffer", r.Bounds(), w, hgt)
			}
			if err := c.readRaw(fb, r, pf); err != nil {
				return nil, err
			}
		case EncodingDesktopSize:
			if r.Width*r.Height > c.limits.maxPixels {
				return nil, protocolError("DesktopSize %dx%d exceeds the limit of %d pixels", r.Width, r.Height, c.limits.maxPixels)
			}
			resize.pending, resize.width, resize.height = true, r.Width, r.Height
		default:
			return nil, protocolError("rectangle with encoding %d, which the client cannot decode", r.Encoding)
		}
		u.Rects = append(u.Rects, r)
	}
	apply()
	return u, nil
}

// readRaw reads the payload of a Raw rectangle into fb, or drops it.
func (c *Conn) readRaw(fb *Framebuffer, r Rectangle, pf PixelFormat) error {
	size := r.Width * r.Height * pf.BytesPerPixel()
	if fb == nil {
		if _, err := c.br.Discard(size); err != nil {
			return readError("Raw rectangle", err)
		}
		return nil
	}
	if err := fb.readRaw(c.br, r, pf); err != nil {
		return readError("Raw rectangle", err)
	}
	return nil
}

func (c *Conn) readColourMap(fb *Framebuffer) (ServerMessage, error) {
	h, err := c.readFull(5, "SetColourMapEntries")
	if err != nil {
		return nil, err
	}
	first := int(binary.BigEndian.Uint16(h[1:]))
	n := int(binary.BigEndian.Uint16(h[3:]))
	if first+n > 1<<16 {
		return nil, protocolError("SetColourMapEntries %d entries from %d pass entry 65535", n, first)
	}
	b, err := c.readFull(6*n, "colour map entries")
	if err != nil {
		return nil, err
	}
	m := &c.colours
	m.First = first
	m.Colours = m.Colours[:0]
	for i := range n {
		m.Colours = append(m.Colours, Colour{
			R: binary.BigEndian.Uint16(b[6*i:]),
			G: binary.BigEndian.Uint16(b[6*i+2:]),
			B: binary.BigEndian.Uint16(b[6*i+4:]),
		})
	}
	if fb != nil {
		fb.setColours(first, m.Colours)
	}
	return m, nil
}

func (c *Conn) readCutText() (ServerMessage, error) {
	h, err := c.readFull(7, "ServerCutText")
	if err != nil {
		return nil, err
	}
	text, truncated, err := readCutText(c.br, binary.BigEndian.Uint32(h[3:]), c.limits.maxCutText, "ServerCutText")
	if err != nil {
		return nil, err
	}
	return &ServerCutText{Text: text, Truncated: truncated}, nil
}
