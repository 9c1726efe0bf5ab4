package rfbtest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"

	"github.com/kvmpki/kvmpki/rfb"
)

const (
	typeVeNCrypt = 19
	// failureReason is QEMU's reason string, NUL included.
	failureReason = "Authentication failed\x00"
	maxPlainField = 1 << 16
)

// ErrClientRejected is recorded when the server refused the client's
// credentials or certificate.
var ErrClientRejected = errors.New("rfbtest: client rejected")

// bufferedConn reads through r, so bytes read ahead reach TLS.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

type serverHandshake struct {
	cfg   *Config
	raw   net.Conn
	br    *bufio.Reader
	rw    io.ReadWriter
	tls   *tls.Conn
	minor int
}

func handshake(conn net.Conn, cfg *Config) (*ServerConn, error) {
	h := &serverHandshake{cfg: cfg, raw: conn, br: bufio.NewReader(conn)}
	h.rw = &bufferedConn{Conn: conn, r: h.br}
	if _, err := fmt.Fprintf(h.rw, "RFB 003.%03d\n", cfg.ProtocolMinor); err != nil {
		return nil, err
	}
	var v [12]byte
	if _, err := io.ReadFull(h.rw, v[:]); err != nil {
		return nil, fmt.Errorf("rfbtest: reading client version: %w", err)
	}
	var major int
	if _, err := fmt.Sscanf(string(v[:]), "RFB %03d.%03d\n", &major, &h.minor); err != nil || major != 3 {
		binary.Write(h.rw, binary.BigEndian, uint32(0))
		return nil, fmt.Errorf("rfbtest: client version %q", v[:])
	}
	if h.minor > cfg.ProtocolMinor {
		return nil, fmt.Errorf("rfbtest: client asked for 3.%d above the server's 3.%d", h.minor, cfg.ProtocolMinor)
	}
	if h.minor != 3 && h.minor != 7 && h.minor != 8 {
		h.minor = 3
	}
	if err := h.security(); err != nil {
		return nil, err
	}
	shared, err := readU8(h.rw)
	if err != nil {
		return nil, fmt.Errorf("rfbtest: reading ClientInit: %w", err)
	}
	init := rfb.ServerInit{Width: cfg.Width, Height: cfg.Height, PixelFormat: cfg.PixelFormat, Name: cfg.Name}
	msg, err := init.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	if _, err := h.rw.Write(msg); err != nil {
		return nil, err
	}
	sc := &ServerConn{
		conn:        h.raw,
		Shared:      shared != 0,
		PixelFormat: cfg.PixelFormat,
		width:       cfg.Width,
		height:      cfg.Height,
		cfg:         cfg,
	}
	if h.tls != nil {
		sc.conn = h.tls
		st := h.tls.ConnectionState()
		sc.TLS = &st
		sc.br = bufio.NewReader(h.tls)
	} else {
		sc.br = bufio.NewReader(&bufferedConn{Conn: h.raw, r: h.br})
	}
	return sc, nil
}

func (h *serverHandshake) security() error {
	cfg := h.cfg
	var plain []byte
	var subtypes []uint32
	for _, s := range cfg.Security {
		if s.IsVeNCrypt() {
			if len(subtypes) == 0 {
				plain = append(plain, typeVeNCrypt)
			}
			subtypes = append(subtypes, uint32(s))
		} else {
			plain = append(plain, byte(s))
		}
	}
	subtypes = append(subtypes, cfg.ExtraSubtypes...)
	if h.minor == 3 {
		for _, t := range plain {
			if t == byte(rfb.SecurityNone) || t == byte(rfb.SecurityVNCAuth) {
				if err := binary.Write(h.rw, binary.BigEndian, uint32(t)); err != nil {
					return err
				}
				return h.authenticate(rfb.Security(t))
			}
		}
		binary.Write(h.rw, binary.BigEndian, uint32(0))
		return errors.New("rfbtest: no security type for a 3.3 client")
	}
	offer := append(slices.Clone(plain), cfg.ExtraTypes...)
	if _, err := h.rw.Write(append([]byte{byte(len(offer))}, offer...)); err != nil {
		return err
	}
	choice, err := readU8(h.rw)
	if err != nil {
		return fmt.Errorf("rfbtest: reading security type: %w", err)
	}
	if !slices.Contains(plain, choice) {
		return h.fail(fmt.Errorf("rfbtest: client chose security type %d, not offered", choice))
	}
	if choice == typeVeNCrypt {
		return h.vencrypt(subtypes)
	}
	return h.authenticate(rfb.Security(choice))
}

func (h *serverHandshake) vencrypt(subtypes []uint32) error {
	if _, err := h.rw.Write([]byte{0, 2}); err != nil {
		return err
	}
	var v [2]byte
	if _, err := io.ReadFull(h.rw, v[:]); err != nil {
		return fmt.Errorf("rfbtest: reading VeNCrypt version: %w", err)
	}
	if v != [2]byte{0, 2} {
		h.rw.Write([]byte{1})
		return fmt.Errorf("rfbtest: client VeNCrypt version %d.%d", v[0], v[1])
	}
	msg := []byte{0, byte(len(subtypes))}
	for _, s := range subtypes {
		msg = binary.BigEndian.AppendUint32(msg, s)
	}
	if _, err := h.rw.Write(msg); err != nil {
		return err
	}
	var b [4]byte
	if _, err := io.ReadFull(h.rw, b[:]); err != nil {
		return fmt.Errorf("rfbtest: reading VeNCrypt subtype: %w", err)
	}
	choice := rfb.Security(binary.BigEndian.Uint32(b[:]))
	if !slices.Contains(h.cfg.Security, choice) {
		h.rw.Write([]byte{0})
		return fmt.Errorf("rfbtest: client chose subtype %v, not offered", choice)
	}
	if choice.Encrypted() {
		if _, err := h.rw.Write([]byte{1}); err != nil {
			return err
		}
		if err := h.startTLS(); err != nil {
			return err
		}
	}
	return h.authenticate(choice)
}

func (h *serverHandshake) startTLS() error {
	cfg := h.cfg.TLSConfig
	if cfg == nil {
		return errors.New("rfbtest: an X509 subtype needs Config.TLSConfig")
	}
	if h.cfg.RejectClientAfterTLS != nil {
		cfg = cfg.Clone()
		cfg.ClientAuth = tls.RequestClientCert
	}
	tc := tls.Server(&bufferedConn{Conn: h.raw, r: h.br}, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("%w: TLS handshake: %w", ErrClientRejected, err)
	}
	if h.cfg.RejectClientAfterTLS != nil {
		if err := h.cfg.RejectClientAfterTLS(tc.ConnectionState()); err != nil {
			// As QEMU: close without a word.
			return fmt.Errorf("%w: %w", ErrClientRejected, err)
		}
	}
	h.tls = tc
	h.rw = tc
	return nil
}

func (h *serverHandshake) authenticate(s rfb.Security) error {
	switch s {
	case rfb.SecurityNone, rfb.SecurityX509None:
		if s == rfb.SecurityNone && h.minor < 8 {
			return nil
		}
	case rfb.SecurityVNCAuth, rfb.SecurityX509Vnc:
		var challenge [16]byte
		rand.Read(challenge[:])
		if _, err := h.rw.Write(challenge[:]); err != nil {
			return err
		}
		var resp [16]byte
		if _, err := io.ReadFull(h.rw, resp[:]); err != nil {
			return fmt.Errorf("rfbtest: reading VNC response: %w", err)
		}
		want := rfb.VNCAuthResponse(h.cfg.Password, challenge)
		if subtle.ConstantTimeCompare(resp[:], want[:]) != 1 {
			return h.fail(fmt.Errorf("%w: wrong VNC password", ErrClientRejected))
		}
	case rfb.SecurityPlain, rfb.SecurityX509Plain:
		var l [8]byte
		if _, err := io.ReadFull(h.rw, l[:]); err != nil {
			return fmt.Errorf("rfbtest: reading Plain lengths: %w", err)
		}
		ul, pl := binary.BigEndian.Uint32(l[:]), binary.BigEndian.Uint32(l[4:])
		if ul > maxPlainField || pl > maxPlainField {
			return fmt.Errorf("rfbtest: Plain lengths %d, %d", ul, pl)
		}
		creds := make([]byte, ul+pl)
		if _, err := io.ReadFull(h.rw, creds); err != nil {
			return fmt.Errorf("rfbtest: reading Plain credentials: %w", err)
		}
		if string(creds[:ul]) != h.cfg.Username || !bytes.Equal(creds[ul:], h.cfg.Password) {
			return h.fail(fmt.Errorf("%w: wrong Plain user name or password", ErrClientRejected))
		}
	default:
		return fmt.Errorf("rfbtest: security %v is not implemented", s)
	}
	_, err := h.rw.Write([]byte{0, 0, 0, 0})
	return err
}

// fail sends a failed SecurityResult, with QEMU's reason for 3.8, and
// returns err.
func (h *serverHandshake) fail(err error) error {
	msg := []byte{0, 0, 0, 1}
	if h.minor >= 8 {
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(failureReason)))
		msg = append(msg, failureReason...)
	}
	h.rw.Write(msg)
	return err
}

func readU8(r io.Reader) (byte, error) {
	var b [1]byte
	_, err := io.ReadFull(r, b[:])
	return b[0], err
}
