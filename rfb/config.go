package rfb

import (
	"crypto/tls"
	"errors"
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
	// the server's own order. If empty, DefaultSecurity() is used: the
	// three VeNCrypt X509 subtypes, so that the session is always
	// encrypted and the server always authenticated by its certificate.
	//
	// SecurityNone and SecurityVNCAuth run the whole session in clear and
	// are used only when listed. SecurityPlain additionally needs
	// InsecureAllowPlainPassword. The anonymous TLS subtypes cannot be
	// listed (ErrAnonymousTLS).
	Security []Security

	// TLSConfig configures TLS for the VeNCrypt X509 subtypes: RootCAs
	// (nil means the system roots), the client certificate that servers
	// such as QEMU with verify-peer=on require, and ServerName. It is
	// cloned, never modified.
	//
	// If ServerName is empty, Dial uses the host part of the address; IP
	// addresses are checked against the certificate's IP SANs. MinVersion
	// is raised to DefaultTLSMinVersion if lower. InsecureSkipVerify is
	// refused unless VerifyPeerCertificate or VerifyConnection does the
	// checking instead.
	//
	// When Certificates holds exactly one certificate and
	// GetClientCertificate is nil, that certificate is presented even if
	// its issuer is not among the CAs the server names: crypto/tls would
	// otherwise silently send none, which QEMU reports only by closing
	// the connection.
	TLSConfig *tls.Config

	// Password returns the VNC password (SecurityVNCAuth, SecurityX509Vnc)
	// or the Plain password. It is called only when the server asks for
	// one, and the client clears the returned slice after use. If nil, an
	// empty password is used.
	Password func() ([]byte, error)

	// Username is the user name for the Plain subtypes.
	Username string

	// InsecureAllowPlainPassword allows SecurityPlain, which sends the
	// user name and password unencrypted, when it is also listed in
	// Security. X509Plain, which sends them inside TLS, needs no opt-in.
	InsecureAllowPlainPassword bool

	// Exclusive asks the server for exclusive access in ClientInit. The
	// default, shared, keeps other viewers connected: QEMU's default
	// share policy disconnects every other client when one asks for
	// exclusive access.
	Exclusive bool

	// MaxFramebufferPixels bounds width × height of the framebuffer the
	// server may announce. Zero means DefaultMaxFramebufferPixels.
	MaxFramebufferPixels int

	// MaxCutText bounds the text kept from one ServerCutText message.
	// Zero means DefaultMaxCutText.
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
		return DefaultSecurity()
	}
	return c.Security
}

func (c *Config) maxPixels() int {
	if c.MaxFramebufferPixels > 0 {
		return c.MaxFramebufferPixels
	}
	return DefaultMaxFramebufferPixels
}

func (c *Config) maxCutText() int {
	if c.MaxCutText > 0 {
		return c.MaxCutText
	}
	return DefaultMaxCutText
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// password returns a fresh copy of the caller's password, which the
// caller of password clears.
func (c *Config) password() ([]byte, error) {
	if c.Password == nil {
		return nil, nil
	}
	p, err := c.Password()
	if err != nil {
		return nil, fmt.Errorf("rfb: obtaining the password: %w", err)
	}
	return p, nil
}

// validate checks the configuration before any byte is sent.
func (c *Config) validate() error {
	if err := checkAccepted(c.accepted(), c.InsecureAllowPlainPassword); err != nil {
		return err
	}
	if t := c.TLSConfig; t != nil && t.InsecureSkipVerify && t.VerifyPeerCertificate == nil && t.VerifyConnection == nil {
		return errors.New("rfb: TLSConfig.InsecureSkipVerify without VerifyPeerCertificate or VerifyConnection would accept any server; the rfb package refuses to run unverified")
	}
	return nil
}

// tlsConfig returns the TLS configuration for a VeNCrypt X509 subtype.
func (c *Config) tlsConfig() *tls.Config {
	var t *tls.Config
	if c.TLSConfig != nil {
		t = c.TLSConfig.Clone()
	} else {
		t = &tls.Config{}
	}
	if t.MinVersion < DefaultTLSMinVersion {
		t.MinVersion = DefaultTLSMinVersion
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
