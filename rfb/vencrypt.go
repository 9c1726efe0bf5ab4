package rfb

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// VeNCrypt acknowledgement values. The two acks mean opposite things.
const (
	vencryptVersionOK = 0 // after the version: 0 is OK
	vencryptSubtypeOK = 1 // after an X509 subtype: 1 is OK
)

// tlsState tracks the TLS layer of a VeNCrypt session.
type tlsState struct {
	conn *tls.Conn
	// readSince is set once a byte has arrived over TLS: from then on,
	// EOF is an ordinary close rather than a refused client.
	readSince bool
}

// tlsStream is the handshake's stream once TLS is up.
type tlsStream struct {
	*tls.Conn
	state *tlsState
}

func (s *tlsStream) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	if n > 0 {
		s.state.readSince = true
	}
	return n, err
}

// vencrypt runs VeNCrypt 0.2 (security type 19): version, subtype
// choice, the TLS handshake for the X509 subtypes, then the subtype's
// inner authentication.
func (h *handshake) vencrypt(ctx context.Context, accepted []Security) error {
	var v [2]byte
	if _, err := io.ReadFull(h.rw, v[:]); err != nil {
		return readError("VeNCrypt version", err)
	}
	if v[0] != 0 || v[1] < 2 {
		// 0.1 used other subtype numbers and no current server sends it.
		return protocolError("server speaks VeNCrypt %d.%d; 0.2 is required", v[0], v[1])
	}
	// The client's version, 0.2, went out with the security type.
	ack, err := readU8(h.rw)
	if err != nil {
		return readError("VeNCrypt version ack", err)
	}
	if ack != vencryptVersionOK {
		return protocolError("server refused VeNCrypt 0.2 (ack %d)", ack)
	}
	n, err := readU8(h.rw)
	if err != nil {
		return readError("VeNCrypt subtype count", err)
	}
	if n == 0 {
		return &RefusedError{Reason: "VeNCrypt offered no subtype"}
	}
	raw := make([]byte, 4*int(n))
	if _, err := io.ReadFull(h.rw, raw); err != nil {
		return readError("VeNCrypt subtypes", err)
	}
	offered := make([]Security, n)
	for i := range offered {
		offered[i] = Security(binary.BigEndian.Uint32(raw[4*i:]))
	}
	// The whole list has been consumed, so whatever is chosen the
	// stream stays in step.
	choice, ok := choose(accepted, offered)
	if !ok {
		return &NoSecurityError{Offered: offered, Accepted: accepted}
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(choice))
	if _, err := h.rw.Write(b[:]); err != nil {
		return fmt.Errorf("rfb: sending VeNCrypt subtype: %w", err)
	}
	h.sec = choice
	if choice.x509() {
		ack, err := readU8(h.rw)
		if err != nil {
			return readError("VeNCrypt subtype ack", err)
		}
		if ack != vencryptSubtypeOK {
			return protocolError("server refused VeNCrypt subtype %v (ack %d)", choice, ack)
		}
		if err := h.startTLS(ctx); err != nil {
			return err
		}
	}
	return h.authenticate(choice)
}

// startTLS runs the TLS handshake on the same stream. Reads go through
// the pre-TLS buffered reader, so nothing it read ahead is lost.
func (h *handshake) startTLS(ctx context.Context) error {
	tc := tls.Client(&bufferedConn{Conn: h.raw, r: h.br}, h.cfg.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		var refused *tls.CertificateVerificationError
		if errors.As(err, &refused) {
			// The server certificate was refused: say why with the
			// sentinel every kvmpki package uses.
			err = pkicore.VerifyReason(err)
		}
		return fmt.Errorf("rfb: TLS handshake with the VNC server: %w", err)
	}
	h.tls = &tlsState{conn: tc}
	h.rw = &tlsStream{Conn: tc, state: h.tls}
	return nil
}

// isTLSAlert reports whether err is a TLS alert from the peer, which is
// how a crypto/tls server refuses a client certificate under TLS 1.3
// (after the client's handshake has completed).
func isTLSAlert(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	var alert tls.AlertError
	return errors.As(err, &alert)
}
