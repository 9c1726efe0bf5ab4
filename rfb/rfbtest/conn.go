package rfbtest

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"image"
	"io"
	"net"

	"github.com/kvmpki/kvmpki/rfb"
)

// ServerConn is the server's side of a connection after the handshake.
type ServerConn struct {
	conn net.Conn // raw or TLS
	br   *bufio.Reader
	cfg  *Config

	// Shared is the client's ClientInit flag.
	Shared bool
	// TLS is the server's view of the TLS connection, nil without TLS.
	TLS *tls.ConnectionState
	// PixelFormat is the format updates are sent in: the server's, until
	// the client sends SetPixelFormat.
	PixelFormat rfb.PixelFormat
	// Encodings is the client's last SetEncodings list.
	Encodings []rfb.Encoding

	width, height int
}

// Conn returns the connection (TLS or not), for writing scripted bytes.
func (sc *ServerConn) Conn() net.Conn { return sc.conn }

// ClientMessage is a decoded client-to-server message; Type is one of
// the rfb.Client* message types.
type ClientMessage = rfb.ClientMessage

// ReadClientMessage reads the next client message with
// rfb.ReadClientMessage. SetPixelFormat and SetEncodings also update the
// ServerConn's fields.
func (sc *ServerConn) ReadClientMessage() (*ClientMessage, error) {
	m, err := rfb.ReadClientMessage(sc.br, maxPlainField<<4)
	if err != nil {
		return nil, err
	}
	switch m.Type {
	case rfb.ClientSetPixelFormat:
		sc.PixelFormat = m.PixelFormat
	case rfb.ClientSetEncodings:
		sc.Encodings = m.Encodings
	}
	return m, nil
}

// WriteRaw sends one FramebufferUpdate with a Raw rectangle per entry of
// rects, taking the pixels from img in the current PixelFormat.
func (sc *ServerConn) WriteRaw(img image.Image, rects ...image.Rectangle) error {
	pf := sc.PixelFormat
	if !pf.TrueColour {
		if err := sc.writeColourMap332(); err != nil {
			return err
		}
	}
	msg := []byte{0, 0}
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(rects)))
	for _, r := range rects {
		msg = appendRectHeader(msg, r, rfb.EncodingRaw)
		msg = AppendPixels(msg, img, r, pf)
	}
	_, err := sc.conn.Write(msg)
	return err
}

// WriteDesktopSize sends a FramebufferUpdate with one DesktopSize
// rectangle and records the new size.
func (sc *ServerConn) WriteDesktopSize(width, height int) error {
	msg := []byte{0, 0, 0, 1}
	msg = appendRectHeader(msg, image.Rect(0, 0, width, height), rfb.EncodingDesktopSize)
	sc.width, sc.height = width, height
	_, err := sc.conn.Write(msg)
	return err
}

// WriteBell sends a Bell.
func (sc *ServerConn) WriteBell() error {
	_, err := sc.conn.Write([]byte{2})
	return err
}

// WriteCutText sends a ServerCutText.
func (sc *ServerConn) WriteCutText(text []byte) error {
	msg := []byte{3, 0, 0, 0}
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(text)))
	_, err := sc.conn.Write(append(msg, text...))
	return err
}

// WriteColourMap sends a SetColourMapEntries.
func (sc *ServerConn) WriteColourMap(first int, colours []rfb.Colour) error {
	msg := []byte{1, 0}
	msg = binary.BigEndian.AppendUint16(msg, uint16(first))
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(colours)))
	for _, c := range colours {
		msg = binary.BigEndian.AppendUint16(msg, c.R)
		msg = binary.BigEndian.AppendUint16(msg, c.G)
		msg = binary.BigEndian.AppendUint16(msg, c.B)
	}
	_, err := sc.conn.Write(msg)
	return err
}

// writeColourMap332 sends a 3-3-2 colour map, which AppendPixels uses for
// formats without true colour.
func (sc *ServerConn) writeColourMap332() error {
	colours := make([]rfb.Colour, 256)
	for i := range colours {
		colours[i] = rfb.Colour{
			R: uint16(uint32(i>>5&7) * 0xffff / 7),
			G: uint16(uint32(i>>2&7) * 0xffff / 7),
			B: uint16(uint32(i&3) * 0xffff / 3),
		}
	}
	return sc.WriteColourMap(0, colours)
}

func appendRectHeader(b []byte, r image.Rectangle, e rfb.Encoding) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(r.Min.X))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Min.Y))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Dx()))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Dy()))
	return binary.BigEndian.AppendUint32(b, uint32(e))
}

// AppendPixels appends the pixels of img inside r, row by row, encoded in
// pf: the payload of a Raw rectangle. Formats without true colour use the
// 3-3-2 colour map the server sends before such updates.
func AppendPixels(b []byte, img image.Image, r image.Rectangle, pf rfb.PixelFormat) []byte {
	bpp := pf.BytesPerPixel()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			var v uint32
			if pf.TrueColour {
				v = (cr*uint32(pf.RedMax)/0xffff)<<pf.RedShift |
					(cg*uint32(pf.GreenMax)/0xffff)<<pf.GreenShift |
					(cb*uint32(pf.BlueMax)/0xffff)<<pf.BlueShift
			} else {
				v = (cr>>13)<<5 | (cg>>13)<<2 | cb>>14
			}
			switch bpp {
			case 1:
				b = append(b, byte(v))
			case 2:
				if pf.BigEndian {
					b = binary.BigEndian.AppendUint16(b, uint16(v))
				} else {
					b = binary.LittleEndian.AppendUint16(b, uint16(v))
				}
			default:
				if pf.BigEndian {
					b = binary.BigEndian.AppendUint32(b, v)
				} else {
					b = binary.LittleEndian.AppendUint32(b, v)
				}
			}
		}
	}
	return b
}

// ServeFramebuffer is the default handler: it answers every
// non-incremental FramebufferUpdateRequest with Config.Image as one Raw
// rectangle (clipped to the framebuffer), ignores incremental ones and
// input events, and returns nil when the client closes the connection.
func ServeFramebuffer(sc *ServerConn) error {
	for {
		m, err := sc.ReadClientMessage()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		if m.Type != rfb.ClientFramebufferUpdateRequest || m.Incremental {
			continue
		}
		r := m.Rect.Intersect(image.Rect(0, 0, sc.width, sc.height))
		if r.Empty() {
			continue
		}
		if err := sc.WriteRaw(sc.cfg.Image, r); err != nil {
			return err
		}
	}
}
