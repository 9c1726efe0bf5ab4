package rfb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"syscall"
	"time"
)

// Dial connects to the RFB server at addr on the named network ("tcp")
// and runs the handshake with Client. ctx bounds the dial and the
// handshake only. If cfg.TLSConfig.ServerName is empty, the host part of
// addr is the name the server certificate is checked against.
func Dial(ctx context.Context, network, addr string, cfg *Config) (*Conn, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("rfb: %w", err)
	}
	c, err := Client(ctx, raw, cfg.withServerName(addr))
	if err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// Client runs the client side of the RFB handshake on conn: protocol
// version, security negotiation, authentication, ClientInit and
// ServerInit. ctx bounds the handshake; the returned Conn is not bound by
// it. On failure, the caller still owns conn and closes it.
//
// When cfg accepts a VeNCrypt X509 subtype, cfg.TLSConfig.ServerName
// must be set, since Client cannot know the address conn was dialled
// with and the server certificate is always checked against a name.
func Client(ctx context.Context, conn net.Conn, cfg *Config) (*Conn, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.needsServerName() {
		return nil, errors.New("rfb: Config.TLSConfig.ServerName is empty: Client needs the name the server certificate must be valid for (Dial takes it from the address)")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rfb: handshake: %w", err)
	}
	// Only the context sets a deadline, so that a timeout is always
	// reported as the context's error.
	stop := context.AfterFunc(ctx, func() {
		// Wake any blocked read or write; the handshake then fails.
		_ = conn.SetDeadline(time.Unix(1, 0))
	})
	h := &handshake{cfg: cfg, raw: conn, br: bufio.NewReaderSize(conn, handshakeBufferSize)}
	c, err := h.run(ctx)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("rfb: handshake: %w (%w)", ctxErr, err)
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// handshake holds the state of one client handshake.
type handshake struct {
	cfg   *Config
	raw   net.Conn      // the transport
	br    *bufio.Reader // buffered reads from raw, before TLS
	rw    io.ReadWriter // the current stream: raw (through br), then TLS
	tls   *tlsState
	minor int // negotiated protocol minor version: 3, 7 or 8
	sec   Security
	// clientInitSent is set when ClientInit went out with the last
	// authentication message, saving a round trip: a server that refuses
	// the client closes the connection and never reads it.
	clientInitSent bool
}

// clientInit appends the ClientInit message to b.
func (h *handshake) clientInit(b []byte) []byte {
	if h.cfg.Exclusive {
		return append(b, 0)
	}
	return append(b, 1)
}

// bufferedConn reads through r, a buffered reader over the embedded conn,
// so that bytes read ahead before the TLS switch reach the TLS layer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (h *handshake) run(ctx context.Context) (*Conn, error) {
	h.rw = &bufferedConn{Conn: h.raw, r: h.br}
	log := h.cfg.logger()
	if err := h.version(); err != nil {
		return nil, err
	}
	if err := h.security(ctx); err != nil {
		return nil, err
	}
	if log.Enabled(ctx, slog.LevelDebug) {
		log.DebugContext(ctx, "rfb: authenticated", "version", h.versionString(), "security", h.sec.String())
	}

	if !h.clientInitSent {
		if _, err := h.rw.Write(h.clientInit(nil)); err != nil {
			return nil, fmt.Errorf("rfb: sending ClientInit: %w", err)
		}
	}
	init, err := readServerInit(h.rw, h.cfg.maxPixels())
	if err != nil {
		return nil, err
	}
	log.DebugContext(ctx, "rfb: ServerInit", "width", init.Width, "height", init.Height, "name", init.Name)
	return newConn(h, init), nil
}

func (h *handshake) versionString() string { return "3." + strconv.Itoa(h.minor) }

// version reads the server's ProtocolVersion and answers with the
// highest version both speak, capped at 3.8.
func (h *handshake) version() error {
	var v [12]byte
	if _, err := io.ReadFull(h.rw, v[:]); err != nil {
		return readError("ProtocolVersion", err)
	}
	major, minor, ok := parseVersion(v)
	if !ok {
		return protocolError("server sent ProtocolVersion %q, not \"RFB xxx.yyy\\n\"", v[:])
	}
	switch {
	case major < 3:
		return protocolError("server speaks RFB %d.%d; 3.3 or later is required", major, minor)
	case major > 3 || minor >= 8:
		h.minor = 8
	case minor == 7:
		h.minor = 7
	default: // 3.3 to 3.6; 3.4 and 3.5 are 3.3 in disguise
		h.minor = 3
	}
	if _, err := fmt.Fprintf(h.rw, "RFB 003.%03d\n", h.minor); err != nil {
		return fmt.Errorf("rfb: sending ProtocolVersion: %w", err)
	}
	return nil
}

func parseVersion(v [12]byte) (major, minor int, ok bool) {
	if !bytes.HasPrefix(v[:], []byte("RFB ")) || v[7] != '.' || v[11] != '\n' {
		return 0, 0, false
	}
	digits := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	major, ok1 := digits(v[4:7])
	minor, ok2 := digits(v[8:11])
	return major, minor, ok1 && ok2
}

// security negotiates the security type and runs its authentication, up
// to and including the SecurityResult.
func (h *handshake) security(ctx context.Context) error {
	accepted := h.cfg.accepted()
	if h.minor == 3 {
		return h.security33(accepted)
	}
	n, err := readU8(h.rw)
	if err != nil {
		return readError("security types", err)
	}
	if n == 0 {
		reason, err := readString(h.rw, maxReasonLength, "reason")
		if err != nil {
			return err
		}
		return &RefusedError{Reason: reason}
	}
	types := make([]byte, n)
	if _, err := io.ReadFull(h.rw, types); err != nil {
		return readError("security types", err)
	}
	offered := make([]Security, len(types))
	for i, t := range types {
		offered[i] = Security(t)
	}
	choice, ok := chooseType(accepted, offered)
	if !ok {
		return &NoSecurityError{Offered: offered, Accepted: accepted}
	}
	msg := []byte{byte(choice)}
	if choice == securityTypeVeNCrypt {
		// The only VeNCrypt version the client speaks goes out with
		// the choice, a round trip early; a server that speaks no 0.2
		// refuses it, as it would anyway.
		msg = append(msg, 0, 2)
	}
	if _, err := h.rw.Write(msg); err != nil {
		return fmt.Errorf("rfb: sending security type: %w", err)
	}
	if choice == securityTypeVeNCrypt {
		return h.vencrypt(ctx, accepted)
	}
	h.sec = choice
	return h.authenticate(choice)
}

// chooseType picks the RFB security type: the first accepted method the
// server offers directly, or VeNCrypt if an accepted subtype comes first
// and the server offers VeNCrypt.
func chooseType(accepted, offered []Security) (Security, bool) {
	hasVeNCrypt := containsSecurity(offered, securityTypeVeNCrypt)
	for _, a := range accepted {
		if a.IsVeNCrypt() {
			if hasVeNCrypt {
				return securityTypeVeNCrypt, true
			}
			continue
		}
		if containsSecurity(offered, a) {
			return a, true
		}
	}
	return 0, false
}

// security33 handles RFB 3.3, where the server decides the type.
func (h *handshake) security33(accepted []Security) error {
	var b [4]byte
	if _, err := io.ReadFull(h.rw, b[:]); err != nil {
		return readError("security type", err)
	}
	t := binary.BigEndian.Uint32(b[:])
	if t == 0 {
		// TigerVNC sends a reason here; QEMU just closes.
		reason, _ := readString(h.rw, maxReasonLength, "reason")
		return &RefusedError{Reason: reason}
	}
	s := Security(t)
	if s.IsVeNCrypt() || s == securityTypeVeNCrypt || !containsSecurity(accepted, s) {
		return &NoSecurityError{Offered: []Security{s}, Accepted: accepted}
	}
	h.sec = s
	return h.authenticate(s)
}

// authenticate runs the authentication of a plain RFB security type or of
// the inner part of a VeNCrypt subtype, then reads the SecurityResult.
func (h *handshake) authenticate(s Security) error {
	// The last authentication message carries ClientInit along.
	var msg []byte
	switch s {
	case SecurityNone:
		if h.minor < 8 {
			return nil // no SecurityResult before 3.8
		}
	case SecurityVNCAuth, SecurityX509Vnc:
		resp, err := vncAuth(h.rw, h.cfg)
		if err != nil {
			return h.afterTLS(err)
		}
		msg = append(msg, resp[:]...)
		clear(resp[:])
	case SecurityPlain, SecurityX509Plain:
		creds, err := plainCredentials(h.cfg)
		if err != nil {
			return err
		}
		msg = creds
	case SecurityX509None:
	default:
		return fmt.Errorf("rfb: internal error: no authentication for %v", s)
	}
	msg = h.clientInit(msg)
	_, err := h.rw.Write(msg)
	clear(msg)
	if err != nil {
		return h.afterTLS(fmt.Errorf("rfb: sending authentication and ClientInit: %w", err))
	}
	h.clientInitSent = true
	return h.afterTLS(h.securityResult())
}

// afterTLS maps the symptoms of a server closing the connection right
// after the TLS handshake to ErrTLSClientRejected.
func (h *handshake) afterTLS(err error) error {
	if err == nil || h.tls == nil || h.tls.readSince {
		return err
	}
	if isClosed(err) || isTLSAlert(err) {
		return &rejectedError{cause: err}
	}
	return err
}

// securityResult reads the SecurityResult, and on failure the reason
// string RFB 3.8 adds.
func (h *handshake) securityResult() error {
	var b [4]byte
	if _, err := io.ReadFull(h.rw, b[:]); err != nil {
		return readError("SecurityResult", err)
	}
	if h.tls != nil {
		h.tls.readSince = true
	}
	code := binary.BigEndian.Uint32(b[:])
	if code == 0 {
		return nil
	}
	e := &AuthError{Code: code}
	if h.minor >= 8 {
		// A reason we cannot read is no reason to hide the failure.
		e.Reason, _ = readString(h.rw, maxReasonLength, "reason")
	}
	return e
}

// plainCredentials returns the Plain subtypes' message: U32 user name
// length, U32 password length, user name, password. The caller clears
// it.
func plainCredentials(cfg *Config) ([]byte, error) {
	password, err := cfg.password()
	if err != nil {
		return nil, err
	}
	defer clear(password)
	if len(cfg.Username) > maxPlainCredentialLength || len(password) > maxPlainCredentialLength {
		return nil, fmt.Errorf("rfb: Plain user name or password longer than %d bytes", maxPlainCredentialLength)
	}
	msg := make([]byte, 0, 8+len(cfg.Username)+len(password)+1)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(cfg.Username)))
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(password)))
	msg = append(msg, cfg.Username...)
	return append(msg, password...), nil
}

// ServerInit is the server's last handshake message.
type ServerInit struct {
	Width, Height int
	PixelFormat   PixelFormat
	// Name is the desktop name, e.g. "QEMU (vm-name)". Its encoding is
	// unspecified; it is kept as sent.
	Name string
}

// AppendBinary appends the wire form of si, e.g. for a proxy that replays
// it to its own viewer before Relay.
func (si ServerInit) AppendBinary(b []byte) ([]byte, error) {
	if si.Width < 0 || si.Width > 0xffff || si.Height < 0 || si.Height > 0xffff {
		return nil, fmt.Errorf("rfb: ServerInit size %dx%d out of range", si.Width, si.Height)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(si.Width))
	b = binary.BigEndian.AppendUint16(b, uint16(si.Height))
	b, _ = si.PixelFormat.AppendBinary(b)
	b = binary.BigEndian.AppendUint32(b, uint32(len(si.Name)))
	return append(b, si.Name...), nil
}

func readServerInit(r io.Reader, maxPixels int) (ServerInit, error) {
	var b [4 + pixelFormatLength]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return ServerInit{}, readError("ServerInit", err)
	}
	si := ServerInit{
		Width:  int(binary.BigEndian.Uint16(b[0:])),
		Height: int(binary.BigEndian.Uint16(b[2:])),
	}
	_ = si.PixelFormat.UnmarshalBinary(b[4:])
	if err := si.PixelFormat.Validate(); err != nil {
		return ServerInit{}, fmt.Errorf("rfb: ServerInit: %w", err)
	}
	if si.Width*si.Height > maxPixels {
		return ServerInit{}, protocolError("ServerInit framebuffer %dx%d exceeds the limit of %d pixels", si.Width, si.Height, maxPixels)
	}
	name, err := readString(r, maxDesktopNameLength, "desktop name")
	if err != nil {
		return ServerInit{}, err
	}
	si.Name = name
	return si, nil
}

// readString reads a U32 length and that many bytes, at most limit, and
// trims trailing NULs (QEMU's reason ends with one).
func readString(r io.Reader, limit int, what string) (string, error) {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", readError(what+" length", err)
	}
	n := binary.BigEndian.Uint32(b[:])
	if uint64(n) > uint64(limit) {
		return "", protocolError("%s of %d bytes exceeds the limit of %d", what, n, limit)
	}
	s := make([]byte, n)
	if _, err := io.ReadFull(r, s); err != nil {
		return "", readError(what, err)
	}
	return string(bytes.TrimRight(s, "\x00")), nil
}

func readU8(r io.Reader) (byte, error) {
	var b [1]byte
	_, err := io.ReadFull(r, b[:])
	return b[0], err
}

// readError wraps a read failure while waiting for what.
func readError(what string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("rfb: reading %s: %w", what, err)
}

// isClosed reports whether err says the peer closed the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
