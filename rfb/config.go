package rfb

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
)

// Config configures a client. The zero value is usable for a server that
// offers VeNCrypt with a certificate the system roots trust and no
// password; set TLSConfig.RootCAs to trust a private CA. A Config must not
// be modified after it has been passed to Dial or Client.
type Config struct {
	// Security lists the methods the client accepts, in order of
	// preference. The first one the server also offers is used, whatever
	// the server's own order. If empty, the three VeNCrypt X509 subtypes
	// are accepted (X509Vnc, X509Plain, X509None, in that order), so that
	// the session is always encrypted and the server always
	// authenticated by its certificate.
	//
	// SecurityNone and SecurityVNCAuth run the whole session in clear and
	// are used only when listed. SecurityPlain additionally needs
	// InsecureAllowPlainPassword. The anonymous TLS subtypes cannot be
	// listed (ErrAnonymousTLS).
	Security []Security

	// TLSConfig configures TLS for the VeNCrypt X509 subtypes: RootCAs
	// (nil means the system roots), the client certificate that servers
	// such as QEMU with verify-peer=on require, and ServerName. It is
	// cloned, never modified. Nil means a zero tls.Config: the system
	// roots, no client certificate.
	//
	// If ServerName is empty, Dial uses the host part of the address; IP
	// addresses are checked against the certificate's IP SANs. Client,
	// which does not know the address, refuses an empty ServerName when
	// an X509 subtype is accepted. MinVersion is raised to TLS 1.2 if
	// lower.
	//
	// InsecureSkipVerify is always refused (an error wrapping
	// ErrInsecureConfig at Dial and Client): it would accept any
	// certificate for any name. To verify with a hook of your own, such
	// as one that also checks revocation with the CA
	// (provider.VerifyServerConnection), keep RootCAs and ServerName and
	// set VerifyConnection: crypto/tls then checks the chain and the name
	// first and calls the hook after, on every handshake.
	//
	// When Certificates holds exactly one certificate and
	// GetClientCertificate is nil, that certificate is presented even if
	// its issuer is not among the CAs the server names: crypto/tls would
	// otherwise silently send none, which QEMU reports only by closing
	// the connection.
	TLSConfig *tls.Config

	// Password returns the VNC password (SecurityVNCAuth, SecurityX509Vnc)
	// or the Plain password. It is called only when the server asks for
	// one. The client copies the returned slice and clears its copy after
	// use; it never modifies the returned slice, which stays the
	// caller's (to keep, or to clear when it chooses). If nil, an empty
	// password is used.
	Password func() ([]byte, error)

	// Username is the user name for the Plain subtypes. Empty means an
	// empty user name.
	Username string

	// InsecureAllowPlainPassword allows SecurityPlain, which sends the
	// user name and password unencrypted, when it is also listed in
	// Security. X509Plain, which sends them inside TLS, needs no opt-in.
	// False refuses SecurityPlain.
	InsecureAllowPlainPassword bool

	// Exclusive asks the server for exclusive access in ClientInit. The
	// default, shared, keeps other viewers connected: QEMU's default
	// share policy disconnects every other client when one asks for
	// exclusive access.
	Exclusive bool

	// MaxFramebufferPixels bounds width × height of the framebuffer the
	// server may announce (ServerInit or DesktopSize). Zero means 8K UHD,
	// 7680 × 4320, a 133 MiB framebuffer.
	MaxFramebufferPixels int

	// MaxCutText bounds the text kept from one ServerCutText message;
	// the rest is read and dropped. Zero means 1 MiB.
	MaxCutText int

	// Logger receives debug records of the handshake steps (never a
	// password). If nil, nothing is logged.
	Logger *slog.Logger
}

// Clone returns a copy of c; TLSConfig is cloned too.
func (c *Config) Clone() *Config {
	if c == nil {
		return &Config{}
	}
	cc := *c
	cc.Security = slices.Clone(c.Security)
	if c.TLSConfig != nil {
		cc.TLSConfig = c.TLSConfig.Clone()
	}
	return &cc
}

// accepted returns the methods the client accepts.
func (c *Config) accepted() []Security {
	if len(c.Security) == 0 {
		return defaultSecurity()
	}
	return c.Security
}

func (c *Config) maxPixels() int {
	if c.MaxFramebufferPixels > 0 {
		return c.MaxFramebufferPixels
	}
	return defaultMaxFramebufferPixels
}

func (c *Config) maxCutText() int {
	if c.MaxCutText > 0 {
		return c.MaxCutText
	}
	return defaultMaxCutText
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// password returns a copy of the caller's password, which the caller of
// password clears: the slice the callback returned is never modified.
func (c *Config) password() ([]byte, error) {
	if c.Password == nil {
		return nil, nil
	}
	p, err := c.Password()
	if err != nil {
		return nil, fmt.Errorf("rfb: obtaining the password: %w", err)
	}
	return bytes.Clone(p), nil
}

// validate checks the configuration before any byte is sent.
func (c *Config) validate() error {
	if err := checkAccepted(c.accepted(), c.InsecureAllowPlainPassword); err != nil {
		return err
	}
	if t := c.TLSConfig; t != nil && t.InsecureSkipVerify {
		return fmt.Errorf("%w: TLSConfig.InsecureSkipVerify would accept any server certificate for any name; keep RootCAs and ServerName, and add checks with VerifyConnection", ErrInsecureConfig)
	}
	return nil
}

// needsServerName reports whether a TLS handshake may happen without the
// name crypto/tls checks the server certificate against.
func (c *Config) needsServerName() bool {
	if c.TLSConfig != nil && c.TLSConfig.ServerName != "" {
		return false
	}
	return slices.ContainsFunc(c.accepted(), Security.x509)
}

// tlsConfig returns the TLS configuration for a VeNCrypt X509 subtype.
func (c *Config) tlsConfig() *tls.Config {
	var t *tls.Config
	if c.TLSConfig != nil {
		t = c.TLSConfig.Clone()
	} else {
		t = &tls.Config{}
	}
	if t.MinVersion < minTLSVersion {
		t.MinVersion = minTLSVersion
	}
	if len(t.Certificates) == 1 && t.GetClientCertificate == nil {
		cert := t.Certificates[0]
		t.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		}
	}
	return t
}

// withServerName returns c, or a copy of c whose TLSConfig.ServerName is
// the host part of addr when it was empty.
func (c *Config) withServerName(addr string) *Config {
	if c.TLSConfig != nil && c.TLSConfig.ServerName != "" {
		return c
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return c
	}
	cc := c.Clone()
	if cc.TLSConfig == nil {
		cc.TLSConfig = &tls.Config{}
	}
	cc.TLSConfig.ServerName = host
	return cc
}
