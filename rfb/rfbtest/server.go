package rfbtest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"image"
	"image/color"
	"net"
	"sync"

	"github.com/kvmpki/kvmpki/rfb"
)

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// ProtocolMinor is the minor version the server announces: 3, 7 or 8.
	// Zero means 8.
	ProtocolMinor int

	// Security lists the methods offered, in the server's order:
	// SecurityNone and SecurityVNCAuth as RFB security types, VeNCrypt
	// subtypes inside one VeNCrypt (19) entry placed where the first of
	// them appears. Empty means SecurityNone. A 3.3 client gets the first
	// plain type.
	Security []rfb.Security

	// ExtraTypes are RFB security type numbers offered after Security's,
	// to check that clients skip what they do not support (e.g. 16,
	// Tight). Nil offers none.
	ExtraTypes []uint8

	// ExtraSubtypes are VeNCrypt subtype numbers offered after
	// Security's subtypes, e.g. anonymous TLS ones. Nil offers none.
	ExtraSubtypes []uint32

	// TLSConfig is the server's TLS configuration for the X509 subtypes:
	// its certificate, and ClientAuth/ClientCAs to demand a client
	// certificate. Nil refuses every client that picks an X509 subtype.
	TLSConfig *tls.Config

	// RejectClientAfterTLS, when set, makes the server behave as QEMU with
	// verify-peer=on: it asks for a client certificate, lets the TLS
	// handshake complete, then closes the connection when the function
	// returns an error for the client's certificates.
	RejectClientAfterTLS func(tls.ConnectionState) error

	// Password is the VNC password, or the Plain password. Nil is the
	// empty password.
	Password []byte
	// Username is the Plain user name. Empty is the empty name.
	Username string

	// Width and Height are the framebuffer size. Zero means 64x48.
	Width, Height int
	// PixelFormat is the server's native format. Zero means QEMU's: 32
	// bits, depth 24, little-endian, true colour, bytes B, G, R, X.
	PixelFormat rfb.PixelFormat
	// Name is the desktop name. Empty means "rfbtest".
	Name string
	// Image is what the default handler serves. Nil means TestPattern of
	// the framebuffer size.
	Image image.Image

	// Handler serves a connection after the handshake. Nil means
	// ServeFramebuffer. The connection is closed when it returns.
	Handler func(*ServerConn) error
}

// QEMUPixelFormat is the pixel format QEMU announces on little-endian
// hosts.
func QEMUPixelFormat() rfb.PixelFormat {
	return rfb.PixelFormat{
		BitsPerPixel: 32, Depth: 24, TrueColour: true,
		RedMax: 255, GreenMax: 255, BlueMax: 255,
		RedShift: 16, GreenShift: 8, BlueShift: 0,
	}
}

// TestPattern returns a deterministic image: four colour quadrants (red
// top left, green top right, blue bottom left, white bottom right) with a
// gradient in the low bits so that misplaced rows show.
func TestPattern(width, height int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	for y := range height {
		for x := range width {
			var c color.RGBA
			switch {
			case x < width/2 && y < height/2:
				c = color.RGBA{R: 0xff, A: 0xff}
			case y < height/2:
				c = color.RGBA{G: 0xff, A: 0xff}
			case x < width/2:
				c = color.RGBA{B: 0xff, A: 0xff}
			default:
				c = color.RGBA{R: 0xff, G: 0xff, B: 0xff, A: 0xff}
			}
			c.R ^= uint8(x & 0x0f)
			c.G ^= uint8(y & 0x0f)
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

// Server is an RFB server on a loopback port.
type Server struct {
	// Addr is the server's address, "127.0.0.1:PORT".
	Addr string
	// Listener is the server's listener.
	Listener net.Listener

	cfg  Config
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
	open map[net.Conn]struct{}
}

// NewServer starts a server with cfg on 127.0.0.1. It panics if it cannot
// listen, as httptest.NewServer does. Close it when done.
func NewServer(cfg *Config) *Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("rfbtest: listening: %v", err))
	}
	return NewServerListener(ln, cfg)
}

// NewServerListener starts a server with cfg on ln.
func NewServerListener(ln net.Listener, cfg *Config) *Server {
	s := &Server{Addr: ln.Addr().String(), Listener: ln, open: map[net.Conn]struct{}{}}
	if cfg != nil {
		s.cfg = *cfg
	}
	s.cfg.defaults()
	s.wg.Add(1)
	go s.serve()
	return s
}

func (c *Config) defaults() {
	if c.ProtocolMinor == 0 {
		c.ProtocolMinor = 8
	}
	if len(c.Security) == 0 {
		c.Security = []rfb.Security{rfb.SecurityNone}
	}
	if c.Width == 0 && c.Height == 0 {
		c.Width, c.Height = 64, 48
	}
	if c.PixelFormat == (rfb.PixelFormat{}) {
		c.PixelFormat = QEMUPixelFormat()
	}
	if c.Name == "" {
		c.Name = "rfbtest"
	}
	if c.Image == nil {
		c.Image = TestPattern(c.Width, c.Height)
	}
	if c.Handler == nil {
		c.Handler = ServeFramebuffer
	}
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.Listener.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.open[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := s.handle(conn)
			conn.Close()
			s.mu.Lock()
			delete(s.open, conn)
			if err != nil {
				s.errs = append(s.errs, err)
			}
			s.mu.Unlock()
		}()
	}
}

func (s *Server) handle(conn net.Conn) error {
	sc, err := handshake(conn, &s.cfg)
	if err != nil {
		return err
	}
	return s.cfg.Handler(sc)
}

// Err returns the errors of the connections served so far (handshake
// refusals, handler errors), joined; nil if there were none. A client
// closing its connection is not an error.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Close stops the listener, closes open connections and waits for their
// handlers to return. Later calls do nothing.
func (s *Server) Close() {
	s.Listener.Close()
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
