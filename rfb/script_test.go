package rfb_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"time"

	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

// scriptConn is a net.Conn that reads a fixed server byte stream and
// records what the client writes. Reads past the script return io.EOF.
type scriptConn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func newScriptConn(script []byte) *scriptConn { return &scriptConn{r: bytes.NewReader(script)} }

func (s *scriptConn) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *scriptConn) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *scriptConn) Close() error                { return nil }
func (s *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (s *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5900}
}
func (s *scriptConn) SetDeadline(time.Time) error      { return nil }
func (s *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (s *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// handshakeNone38 is a server's side of an RFB 3.8 handshake with
// security None and a 64x48 QEMU-format framebuffer named "x".
func handshakeNone38() []byte {
	b := []byte("RFB 003.008\n")
	b = append(b, 1, 1)       // one type: None
	b = append(b, 0, 0, 0, 0) // SecurityResult OK
	init, _ := rfb.ServerInit{Width: 64, Height: 48, PixelFormat: rfbtest.QEMUPixelFormat(), Name: "x"}.AppendBinary(nil)
	return append(b, init...)
}

// noneConfig accepts security None only.
func noneConfig() *rfb.Config {
	return &rfb.Config{Security: []rfb.Security{rfb.SecurityNone}}
}

// scriptedClient runs the client over handshakeNone38 followed by msgs.
func scriptedClient(msgs []byte, cfg *rfb.Config) (*rfb.Conn, error) {
	return rfb.Client(context.Background(), newScriptConn(append(handshakeNone38(), msgs...)), cfg)
}

// Server message builders.

func rectHeader(x, y, w, h int, enc rfb.Encoding) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(x))
	b = binary.BigEndian.AppendUint16(b, uint16(y))
	b = binary.BigEndian.AppendUint16(b, uint16(w))
	b = binary.BigEndian.AppendUint16(b, uint16(h))
	return binary.BigEndian.AppendUint32(b, uint32(enc))
}

func fbUpdate(rects ...[]byte) []byte {
	b := []byte{0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(len(rects)))
	for _, r := range rects {
		b = append(b, r...)
	}
	return b
}

func cutText(n uint32, text string) []byte {
	b := binary.BigEndian.AppendUint32([]byte{3, 0, 0, 0}, n)
	return append(b, text...)
}

var _ io.Reader = (*scriptConn)(nil)

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
