package peers

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"syscall"
	"time"
)

// Just enough RFB 3.8 (RFC 6143) and VeNCrypt 0.2 to reach QEMU's verdict
// on a TLS client certificate. This is test support, not the product's rfb
// package.

const (
	probeTimeout = 15 * time.Second

	secTypeVeNCrypt   = 19
	subtypeX509None   = 260
	subtypeX509Vnc    = 261
	maxReasonLen      = 1 << 16
	securityResultOK  = 0
	vencryptAckOK     = 0 // version ack: 0 means OK
	vencryptSubtypeOK = 1 // subtype ack: 1 means OK
)

// errVNCRefused is returned when QEMU closed the connection after a
// successful TLS handshake instead of sending a SecurityResult.
var errVNCRefused = errors.New("peers: QEMU rejected the TLS client (certificate missing, untrusted or revoked): connection closed after the TLS handshake")

// probeVNC runs the client side of the handshake up to the
// SecurityResult.
func probeVNC(ctx context.Context, addr string, cfg *tls.Config) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("peers: vnc: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return fmt.Errorf("peers: vnc: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if err := vncPreTLS(conn); err != nil {
		return err
	}
	// Nothing is buffered: every read above was an exact io.ReadFull on
	// the raw conn, so the TLS layer starts at the server's first byte.
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("peers: vnc: TLS handshake: %w", err)
	}
	var result [4]byte
	if _, err := io.ReadFull(tc, result[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isConnReset(err) {
			return fmt.Errorf("%w (%v)", errVNCRefused, err)
		}
		return fmt.Errorf("peers: vnc: reading SecurityResult: %w", err)
	}
	if code := binary.BigEndian.Uint32(result[:]); code != securityResultOK {
		reason, _ := readReason(tc)
		return fmt.Errorf("peers: vnc: SecurityResult %d: %q", code, reason)
	}
	return nil
}

// vncPreTLS runs the RFB and VeNCrypt steps before the TLS handshake.
func vncPreTLS(conn net.Conn) error {
	var version [12]byte
	if _, err := io.ReadFull(conn, version[:]); err != nil {
		return fmt.Errorf("peers: vnc: reading ProtocolVersion: %w", err)
	}
	if !bytes.HasPrefix(version[:], []byte("RFB 003.")) || version[11] != '\n' {
		return fmt.Errorf("peers: vnc: unexpected ProtocolVersion %q", version[:])
	}
	if _, err := conn.Write([]byte("RFB 003.008\n")); err != nil {
		return fmt.Errorf("peers: vnc: %w", err)
	}

	types, err := readU8List(conn)
	if err != nil {
		return fmt.Errorf("peers: vnc: reading security types: %w", err)
	}
	if len(types) == 0 {
		reason, _ := readReason(conn)
		return fmt.Errorf("peers: vnc: server offers no security type: %q", reason)
	}
	if !slices.Contains(types, secTypeVeNCrypt) {
		return fmt.Errorf("peers: vnc: server does not offer VeNCrypt (19), only %v; is tls-creds set?", types)
	}
	if _, err := conn.Write([]byte{secTypeVeNCrypt}); err != nil {
		return fmt.Errorf("peers: vnc: %w", err)
	}

	var vv [2]byte
	if _, err := io.ReadFull(conn, vv[:]); err != nil {
		return fmt.Errorf("peers: vnc: reading VeNCrypt version: %w", err)
	}
	if vv[0] != 0 || vv[1] < 2 {
		return fmt.Errorf("peers: vnc: VeNCrypt version %d.%d, need 0.2", vv[0], vv[1])
	}
	if _, err := conn.Write([]byte{0, 2}); err != nil {
		return fmt.Errorf("peers: vnc: %w", err)
	}
	if ack, err := readU8(conn); err != nil {
		return fmt.Errorf("peers: vnc: reading VeNCrypt version ack: %w", err)
	} else if ack != vencryptAckOK {
		return fmt.Errorf("peers: vnc: server refused VeNCrypt 0.2 (ack %d)", ack)
	}

	n, err := readU8(conn)
	if err != nil {
		return fmt.Errorf("peers: vnc: reading VeNCrypt subtype count: %w", err)
	}
	subtypes := make([]uint32, n)
	if err := binary.Read(conn, binary.BigEndian, subtypes); err != nil {
		return fmt.Errorf("peers: vnc: reading VeNCrypt subtypes: %w", err)
	}
	if !slices.Contains(subtypes, subtypeX509None) {
		if slices.Contains(subtypes, subtypeX509Vnc) {
			return errors.New("peers: vnc: server wants X509Vnc (261, a VNC password); the probe supports only X509None (260)")
		}
		return fmt.Errorf("peers: vnc: server does not offer X509None (260), only %v", subtypes)
	}
	if err := binary.Write(conn, binary.BigEndian, uint32(subtypeX509None)); err != nil {
		return fmt.Errorf("peers: vnc: %w", err)
	}
	if ack, err := readU8(conn); err != nil {
		return fmt.Errorf("peers: vnc: reading VeNCrypt subtype ack: %w", err)
	} else if ack != vencryptSubtypeOK {
		return fmt.Errorf("peers: vnc: server refused subtype X509None (ack %d)", ack)
	}
	return nil
}

func readU8(r io.Reader) (byte, error) {
	var b [1]byte
	_, err := io.ReadFull(r, b[:])
	return b[0], err
}

// readU8List reads a U8 count and that many bytes.
func readU8List(r io.Reader) ([]byte, error) {
	n, err := readU8(r)
	if err != nil {
		return nil, err
	}
	list := make([]byte, n)
	_, err = io.ReadFull(r, list)
	return list, err
}

// readReason reads a U32-length reason string, bounded by maxReasonLen,
// and trims QEMU's trailing NUL.
func readReason(r io.Reader) (string, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return "", err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > maxReasonLen {
		return "", fmt.Errorf("peers: vnc: reason of %d bytes exceeds %d", n, maxReasonLen)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(bytes.TrimRight(b, "\x00")), nil
}

// isConnReset reports whether err is a connection reset by the peer.
func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}
