// Package rfb is a client for the Remote Framebuffer protocol (RFB 3.8,
// [RFC 6143], as documented by [rfbproto]) with the VeNCrypt 0.2 security
// type, written to reach the VNC server of a QEMU virtual machine that
// demands TLS with a client certificate and a VNC password, as a console
// proxy does.
//
// For the common case, dial with the CA that issued the hypervisor's
// certificate, the proxy's client certificate and the VM's VNC password,
// then take a screenshot or relay the session:
//
//	c, err := rfb.Dial(ctx, "tcp", "kvm1.example.org:5901", &rfb.Config{
//		TLSConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{proxyCert}},
//		Password:  func() ([]byte, error) { return vncPassword(vm) },
//	})
//	if err != nil { ... }
//	defer c.Close()
//	fmt.Println(c.ConnectionState()) // RFB 3.8, VeNCrypt X509Vnc (261), TLS 1.3 ...
//	img, err := rfb.Screenshot(ctx, c)
//
// # Scope
//
// Protocol versions 3.3, 3.7 and 3.8 (the server's choice, capped at
// 3.8). Security types None and VNC Authentication, and VeNCrypt 0.2 with
// the subtypes X509None, X509Vnc and X509Plain, plus Plain when allowed
// explicitly. After the handshake: SetPixelFormat, SetEncodings,
// FramebufferUpdateRequest, KeyEvent, PointerEvent and ClientCutText; the
// server's FramebufferUpdate (Raw rectangles and the DesktopSize
// pseudo-encoding), SetColourMapEntries, Bell and ServerCutText. A
// Framebuffer applies updates to an Image, an image.Image over the
// server's own RGBX or BGRX bytes into which Raw pixels are read with no
// second pass.
//
// # Console proxies
//
// A proxy dials the VM's server with Dial, accepts its viewer (noVNC
// behind a WebSocket, a desktop viewer) with AcceptViewer, which runs the
// server side of RFB 3.8 with security None and presents the back end's
// ServerInit, then joins the two with Relay:
//
//	c, err := rfb.Dial(ctx, "tcp", vm.VNCAddr, cfg)
//	...
//	v, err := rfb.AcceptViewer(ctx, viewerConn, c.ServerInit(), nil)
//	...
//	err = c.Relay(ctx, v) // returns when either side leaves or ctx ends
//
// The proxy writes no protocol by hand. Security None means the proxy has
// authenticated the viewer before and carries the session in TLS.
//
// # Connecting securely
//
// The zero Config accepts only the VeNCrypt X509 subtypes: the session is
// encrypted with TLS 1.2 or later and the server's certificate is
// verified against TLSConfig.RootCAs (or the system roots) and the server
// name, which Dial takes from the address when TLSConfig.ServerName is
// empty (IP addresses are checked against IP SANs). Config.Security lists
// the accepted methods in order of preference; SecurityNone and
// SecurityVNCAuth, which run the session in clear, are used only when
// listed, and SecurityPlain, which sends the password in clear, also
// needs InsecureAllowPlainPassword. TLSConfig.InsecureSkipVerify is
// always refused (ErrInsecureConfig): a hook of one's own, such as
// provider.VerifyServerConnection checking revocation with the CA, goes
// in TLSConfig.VerifyConnection and runs after crypto/tls has checked
// the chain and the name. A refused server certificate gives an error
// matching ErrUnknownAuthority, ErrNameMismatch, ErrExpired or
// ErrIncompatibleUsage (the values every kvmpki package shares) and
// wrapping the crypto/x509 error.
//
// The anonymous TLS subtypes (TLSNone, TLSVnc, TLSPlain, and the SASL and
// Ident variants) are refused with ErrAnonymousTLS: Go's crypto/tls has
// no anonymous Diffie-Hellman suites, and TLS without a server
// certificate is open to man-in-the-middle attacks.
//
// QEMU with verify-peer=on checks the client certificate only after the
// TLS handshake, and closes the connection without a word when it is
// missing or untrusted; the client reports that as ErrTLSClientRejected.
// A failed password is an *AuthError carrying the server's reason. The
// password is obtained through Config.Password only when the server asks
// for it; the client works on a copy, which it clears after use with the
// buffers derived from it, and never modifies the caller's slice.
//
// ConnectionState reports the negotiated version, security method, TLS
// version, cipher suite and verified chain: what a UI should show as its
// "encrypted" indicator.
//
// # Limits
//
// RFB has no message framing, so a message the client cannot parse ends
// the session with an error wrapping ErrProtocol rather than a guess.
// Every length the server sends is bounded before anything is allocated:
// reason strings and the desktop name (64 KiB), the framebuffer size
// (Config.MaxFramebufferPixels), rectangles (inside the framebuffer), and
// clipboard text (Config.MaxCutText, beyond which it is dropped, and
// kept only as it arrives). A FramebufferUpdate applies at most one size
// change and the framebuffer reuses its memory, so a server announcing
// many sizes costs at most one framebuffer of the largest allowed.
//
// Every call that does I/O takes a context first; Conn also has
// SetDeadline. A read interrupted while waiting for a message leaves the
// connection usable; one interrupted inside a message, and any failed
// write, end it. Close wakes every blocked call and is idempotent.
//
// # Compatibility
//
// Tested against QEMU 7.2 (tls-creds-x509 with verify-peer=on and a VNC
// password) and Xtigervnc 1.12 (-SecurityTypes X509Vnc), and against the
// in-process server of package rfbtest. AcceptViewer and Relay are tested
// with gtk-vnc 1.3's gvnccapture as the viewer. With QEMU, always ask for a
// shared session (the default): QEMU's default share policy disconnects
// the other viewers of a client that asks for exclusive access.
//
// The VNC password is DES-based: only its first 8 bytes count, as for
// every VNC server.
//
// To save round trips, the client sends its VeNCrypt version with its
// choice of security type, and ClientInit with its last authentication
// message; servers read both in order (QEMU and TigerVNC were tested), and
// one that refuses the client closes the connection without reading
// ClientInit.
//
// [RFC 6143]: https://www.rfc-editor.org/rfc/rfc6143
// [rfbproto]: https://github.com/rfbproto/rfbproto/blob/master/rfbproto.rst
package rfb

// BUG(rfb): Only the Raw encoding is decoded, which costs bandwidth (4
// bytes per pixel for 32-bit formats); Relay passes any encoding through.

// BUG(rfb): SASL, Ident, RA2 and the other vendor security types are not
// implemented.
