package rfb

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"image"
	"io"
)

// ClientMessageType is the type of a client-to-server message.
type ClientMessageType uint8

// Client-to-server message types (RFC 6143 §7.5).
const (
	ClientSetPixelFormat           ClientMessageType = msgSetPixelFormat
	ClientSetEncodings             ClientMessageType = msgSetEncodings
	ClientFramebufferUpdateRequest ClientMessageType = msgFramebufferUpdateRequest
	ClientKeyEvent                 ClientMessageType = msgKeyEvent
	ClientPointerEvent             ClientMessageType = msgPointerEvent
	ClientCutText                  ClientMessageType = msgClientCutText
)

// ClientMessage is one message from a viewer to a server, as
// ViewerConn.ReadMessage and ReadClientMessage decode it. Only the fields
// of its Type are set.
type ClientMessage struct {
	Type ClientMessageType
	// PixelFormat is set by SetPixelFormat.
	PixelFormat PixelFormat
	// Encodings is set by SetEncodings, in the viewer's order.
	Encodings []Encoding
	// Rect and Incremental are set by FramebufferUpdateRequest.
	Rect        image.Rectangle
	Incremental bool
	// Key and Down are set by KeyEvent.
	Key  uint32
	Down bool
	// Buttons, X and Y are set by PointerEvent.
	Buttons uint8
	X, Y    int
	// Text is set by ClientCutText, in Latin-1. Truncated is set when
	// the viewer sent more than the limit; the rest was read and
	// dropped.
	Text      []byte
	Truncated bool
}

// ReadClientMessage reads one client-to-server message from r, for a
// server or a proxy that inspects what a viewer sends. ClientCutText
// beyond maxCutText bytes (1 MiB if maxCutText <= 0) is read and
// dropped; every other length is bounded by its U16 field. An unknown
// message type, an invalid pixel format or a negative (Extended
// Clipboard) cut-text length is an error wrapping ErrProtocol.
func ReadClientMessage(r *bufio.Reader, maxCutText int) (*ClientMessage, error) {
	if maxCutText <= 0 {
		maxCutText = defaultMaxCutText
	}
	t, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	m := &ClientMessage{Type: ClientMessageType(t)}
	var b [19]byte
	read := func(n int, what string) ([]byte, error) {
		if _, err := io.ReadFull(r, b[:n]); err != nil {
			return nil, readError(what, err)
		}
		return b[:n], nil
	}
	switch m.Type {
	case ClientSetPixelFormat:
		p, err := read(19, "SetPixelFormat")
		if err != nil {
			return nil, err
		}
		_ = m.PixelFormat.UnmarshalBinary(p[3:])
		if err := m.PixelFormat.Validate(); err != nil {
			return nil, fmt.Errorf("rfb: SetPixelFormat: %w", err)
		}
	case ClientSetEncodings:
		p, err := read(3, "SetEncodings")
		if err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint16(p[1:]))
		m.Encodings = make([]Encoding, 0, min(n, 64))
		for range n {
			e, err := read(4, "SetEncodings")
			if err != nil {
				return nil, err
			}
			m.Encodings = append(m.Encodings, Encoding(int32(binary.BigEndian.Uint32(e))))
		}
	case ClientFramebufferUpdateRequest:
		p, err := read(9, "FramebufferUpdateRequest")
		if err != nil {
			return nil, err
		}
		m.Incremental = p[0] != 0
		x, y := int(binary.BigEndian.Uint16(p[1:])), int(binary.BigEndian.Uint16(p[3:]))
		m.Rect = image.Rect(x, y, x+int(binary.BigEndian.Uint16(p[5:])), y+int(binary.BigEndian.Uint16(p[7:])))
	case ClientKeyEvent:
		p, err := read(7, "KeyEvent")
		if err != nil {
			return nil, err
		}
		m.Down = p[0] != 0
		m.Key = binary.BigEndian.Uint32(p[3:])
	case ClientPointerEvent:
		p, err := read(5, "PointerEvent")
		if err != nil {
			return nil, err
		}
		m.Buttons = p[0]
		m.X, m.Y = int(binary.BigEndian.Uint16(p[1:])), int(binary.BigEndian.Uint16(p[3:]))
	case ClientCutText:
		p, err := read(7, "ClientCutText")
		if err != nil {
			return nil, err
		}
		if m.Text, m.Truncated, err = readCutText(r, binary.BigEndian.Uint32(p[3:]), maxCutText, "ClientCutText"); err != nil {
			return nil, err
		}
	default:
		return nil, protocolError("unknown client message type %d", t)
	}
	return m, nil
}

// readCutText reads the n bytes of cut text that follow a ServerCutText
// or ClientCutText header, keeping at most limit of them.
func readCutText(r *bufio.Reader, n uint32, limit int, what string) (text []byte, truncated bool, err error) {
	if n&0x80000000 != 0 {
		// Negative lengths are the Extended Clipboard pseudo-encoding,
		// which this package never negotiates.
		return nil, false, protocolError("%s with length %#x (Extended Clipboard was not negotiated)", what, n)
	}
	keep := min(int(n), limit)
	// Grow with what arrives rather than trusting the length: a peer
	// announcing a long text it never sends costs nothing.
	text, err = io.ReadAll(io.LimitReader(r, int64(keep)))
	if err == nil && len(text) < keep {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, false, readError(what, err)
	}
	if rest := int(n) - keep; rest > 0 {
		if _, err := r.Discard(rest); err != nil {
			return nil, false, readError(what, err)
		}
		return text, true, nil
	}
	return text, false, nil
}
