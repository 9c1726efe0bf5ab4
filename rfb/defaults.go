package rfb

import "crypto/tls"

// Limits on what a server may make the client read or allocate. A hostile
// or broken server that exceeds one ends the session with an error wrapping
// ErrProtocol; none of them is reachable by a well-behaved server.
const (
	// maxReasonLength bounds a failure reason string. QEMU's is 22 bytes;
	// libvncclient allows 1 MiB, which no server needs.
	maxReasonLength = 64 << 10
	// maxDesktopNameLength bounds the desktop name in ServerInit.
	maxDesktopNameLength = 64 << 10
	// maxPlainCredentialLength bounds the user name and password sent with
	// the Plain subtypes; the wire field is a U32.
	maxPlainCredentialLength = 64 << 10
)

// Defaults used when the corresponding Config field is zero; the fields
// document them.
const (
	// defaultMaxFramebufferPixels bounds width × height of the framebuffer
	// a server may announce (ServerInit or DesktopSize): 8K UHD. A
	// framebuffer of that size takes 133 MiB.
	defaultMaxFramebufferPixels = 7680 * 4320
	// defaultMaxCutText bounds the clipboard text kept from one
	// ServerCutText message; longer text is read, truncated and flagged.
	defaultMaxCutText = 1 << 20
	// minTLSVersion is the lowest TLS version the client accepts. A
	// Config.TLSConfig asking for less is raised to it.
	minTLSVersion = tls.VersionTLS12
)

// readBufferSize is the size of the buffered reader over the connection
// once the handshake is done: a TLS record. Raw rectangles of full rows
// are read straight into the framebuffer, past it.
const readBufferSize = 16 << 10

// handshakeBufferSize is the size of the buffered reader used before the
// TLS switch: the pre-TLS messages are a few dozen bytes.
const handshakeBufferSize = 512

// defaultSecurity returns the security methods accepted when
// Config.Security is empty, in order of preference: only VeNCrypt with a
// verified server certificate, with the VNC password inside TLS first.
func defaultSecurity() []Security {
	return []Security{SecurityX509Vnc, SecurityX509Plain, SecurityX509None}
}
