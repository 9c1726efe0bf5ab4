package libvirttls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path"
	"time"

	"github.com/kvmpki/kvmpki/internal/libvirtdial"
	"github.com/kvmpki/kvmpki/libvirtconf"
)

// Sentinel errors of [CheckHost] reasons.
var (
	// ErrNotConfigured: libvirtd.conf does not serve TLS with the
	// layout's files, or qemu.conf does not enable VNC and migration TLS
	// with the layout's directories.
	ErrNotConfigured = errors.New("libvirttls: not configured for TLS")
	// ErrDialFailed: the TLS dial to the host's libvirtd failed.
	ErrDialFailed = errors.New("libvirttls: TLS dial to libvirtd failed")
)

// CheckHostOptions tune [CheckHost]. The zero value checks files only.
type CheckHostOptions struct {
	// DialAddr, if set, is the host's libvirtd TLS address ("host:port",
	// e.g. "10.0.0.5:16514"): CheckHost then dials it with the host's
	// client certificate and verifies the server's chain against the
	// installed CA, its name and the installed CRL.
	DialAddr string
	// ServerName is the name checked in the server certificate. If
	// empty, the host part of DialAddr.
	ServerName string
	// Timeout bounds the dial and handshake when ctx has no deadline.
	// Zero means 10 seconds.
	Timeout time.Duration
}

// Status is the security state of a host.
type Status struct {
	// Secured is true when every check passed.
	Secured bool
	// Reasons say why the host is not secured; each wraps one of
	// ErrCredentialsMissing, ErrCredentialsInvalid, ErrRevoked,
	// ErrNotConfigured, ErrInsecureConfig or ErrDialFailed.
	Reasons []error
	// Certificate is the host certificate, when it parsed.
	Certificate *x509.Certificate
}

// Err returns nil for a secured host, else the reasons joined.
func (s *Status) Err() error {
	if s.Secured {
		return nil
	}
	return errors.Join(s.Reasons...)
}

// String is "secured" or "not secured: REASONS".
func (s *Status) String() string {
	if s.Secured {
		return "secured"
	}
	return "not secured: " + s.Err().Error()
}

// CheckHost reports whether the host under o.Root is secured: every
// credential pair of the layout (libvirtd server, libvirt client, QEMU's
// VNC server, QEMU's migration server and client) is complete and valid
// (see [Credentials.Verify], with the installed CRL), libvirtd.conf serves
// TLS (listen_tls=1, or libvirtd-tls.socket enabled on a socket-activated
// host) with those files, qemu.conf enables VNC and migration TLS with
// the layout's directories, nothing undoes that ([ErrInsecureConfig]: plain TCP
// through listen_tcp or an enabled or active libvirtd-tcp.socket,
// auth_tcp="none", tls_no_verify_certificate, tls_no_sanity_certificate,
// a weakening tls_priority, vnc or migrate_tls_x509_verify = 0), and, if
// check.DialAddr is set, a TLS handshake with the host's libvirtd succeeds
// and verifies. The units are asked through o.Units. It is secured only when
// every check passes, which is stricter than CloudStack's "cloud.crt
// exists and qemu+tls:// opens".
func CheckHost(ctx context.Context, o *Config, check *CheckHostOptions) *Status {
	if o == nil {
		o = &Config{}
	}
	if check == nil {
		check = &CheckHostOptions{}
	}
	st := &Status{}
	fail := func(err error) { st.Reasons = append(st.Reasons, err) }

	read := func(hostPath string, optional bool) []byte {
		b, err := o.readHostFile(hostPath)
		switch {
		case err == nil:
			return b
		case errors.Is(err, os.ErrNotExist) && optional:
		case errors.Is(err, os.ErrNotExist):
			fail(fmt.Errorf("%w: %s", ErrCredentialsMissing, hostPath))
		default:
			fail(fmt.Errorf("%w: %s: %w", ErrCredentialsInvalid, hostPath, err))
		}
		return nil
	}
	ca, crl := read(CACertPath, false), read(CRLPath, true)
	server := &Credentials{CACert: ca, Cert: read(ServerCertPath, false), Key: read(ServerKeyPath, false), CRL: crl}
	client := &Credentials{CACert: ca, Cert: read(ClientCertPath, false), Key: read(ClientKeyPath, false), CRL: crl}
	var clientParsed *ParsedCredentials
	if len(st.Reasons) == 0 {
		sp, err := server.Verify(o.now())
		if err != nil {
			fail(fmt.Errorf("%w (libvirtd's server credentials)", err))
		} else {
			st.Certificate = sp.Leaf
		}
		if clientParsed, err = client.Verify(o.now()); err != nil {
			fail(fmt.Errorf("%w (libvirt's client credentials)", err))
		}
	}
	for _, err := range o.checkLibvirtdConf(ctx, len(crl) > 0) {
		fail(err)
	}
	// QEMU's directories: VNC server, and both ends of a native-TLS
	// migration. Without them the guest's memory would cross in clear.
	for _, d := range []struct {
		dir, cert, key, what string
	}{
		{VNCDir, QEMUServerCert, QEMUServerKey, "QEMU's VNC credentials"},
		{QEMUDir, QEMUServerCert, QEMUServerKey, "QEMU's migration server credentials"},
		{QEMUDir, QEMUClientCert, QEMUClientKey, "QEMU's migration client credentials"},
	} {
		before := len(st.Reasons)
		c := &Credentials{
			CACert: read(path.Join(d.dir, QEMUCACert), false),
			Cert:   read(path.Join(d.dir, d.cert), false),
			Key:    read(path.Join(d.dir, d.key), false),
			CRL:    read(path.Join(d.dir, QEMUCRL), true),
		}
		if len(st.Reasons) == before {
			if _, err := c.Verify(o.now()); err != nil {
				fail(fmt.Errorf("%w (%s)", err, d.what))
			}
		}
	}
	for _, err := range o.checkQEMUConf() {
		fail(err)
	}
	if check.DialAddr != "" {
		if clientParsed == nil {
			fail(fmt.Errorf("%w: no valid client credentials to dial with", ErrDialFailed))
		} else if err := dialLibvirtd(ctx, check, clientParsed); err != nil {
			fail(err)
		}
	}
	st.Secured = len(st.Reasons) == 0
	return st
}

// checkLibvirtdConf checks that libvirtd serves TLS with the layout, and
// nothing else: no plain TCP (listen_tcp, or libvirtd-tcp.socket enabled
// or active), no certificate check turned off, no weakened tls_priority.
func (o *Config) checkLibvirtdConf(ctx context.Context, withCRL bool) []error {
	data, err := readBounded(o.DiskPath(LibvirtdConfPath))
	if err != nil {
		return []error{fmt.Errorf("%w: %s: %w", ErrNotConfigured, LibvirtdConfPath, err)}
	}
	conf, err := libvirtconf.Parse(data)
	if err != nil {
		return []error{fmt.Errorf("%w: %w", ErrNotConfigured, inFile(err, LibvirtdConfPath))}
	}
	errs := insecureLibvirtd(conf)
	units, err := unitStates(ctx, o.units(), libvirtdTLSSocket, libvirtdTCPSocket)
	if err != nil {
		// Unknown is not secured: the TCP socket may be open.
		return append(errs, fmt.Errorf("%w: cannot tell whether %s is open: %w", ErrInsecureConfig, libvirtdTCPSocket, err))
	}
	if tcp := units[libvirtdTCPSocket]; tcp.open() {
		state := "enabled"
		if tcp.Active {
			state = "active"
		}
		errs = append(errs, fmt.Errorf("%w: %s is %s: a socket-activated libvirtd serves it, unencrypted, whatever listen_tcp says", ErrInsecureConfig, libvirtdTCPSocket, state))
	}
	tlsSocket := units[libvirtdTLSSocket].Enabled && !units[libvirtdTLSSocket].Masked
	if v, ok := conf.Get("listen_tls"); !tlsSocket && (!ok || !v.Equal(libvirtconf.IntValue(1))) {
		errs = append(errs, fmt.Errorf("%w: libvirtd.conf: listen_tls is not 1 and libvirtd-tls.socket is not enabled", ErrNotConfigured))
	}
	want, err := o.LibvirtdSettings(withCRL)
	if err != nil {
		return append(errs, err)
	}
	for _, s := range want {
		switch s.Key {
		case "key_file", "cert_file", "ca_file", "crl_file":
			if v, ok := conf.Get(s.Key); !ok || !v.Equal(s.Value) {
				errs = append(errs, fmt.Errorf("%w: libvirtd.conf: %s is not %s", ErrNotConfigured, s.Key, s.Value))
			}
		}
	}
	return errs
}

// checkQEMUConf checks that qemu.conf enables VNC and migration TLS with
// the layout's directories, and weakens neither.
func (o *Config) checkQEMUConf() []error {
	data, err := readBounded(o.DiskPath(QEMUConfPath))
	if err != nil {
		return []error{fmt.Errorf("%w: %s: %w", ErrNotConfigured, QEMUConfPath, err)}
	}
	conf, err := libvirtconf.Parse(data)
	if err != nil {
		return []error{fmt.Errorf("%w: %w", ErrNotConfigured, inFile(err, QEMUConfPath))}
	}
	errs := insecureQEMU(conf)
	for _, s := range o.QEMUSettings() {
		switch s.Key {
		case "vnc_tls", "vnc_tls_x509_cert_dir", "vnc_tls_x509_verify", "migrate_tls_x509_cert_dir", "migrate_tls_x509_verify":
			if v, ok := conf.Get(s.Key); !ok || !v.Equal(s.Value) {
				errs = append(errs, fmt.Errorf("%w: qemu.conf: %s is not %s", ErrNotConfigured, s.Key, s.Value))
			}
		}
	}
	return errs
}

// dialLibvirtd runs a TLS handshake with libvirtd as a libvirt client
// would (internal/libvirtdial): the chain to the CA file, the name, the
// installed CRLs on every certificate of both chains, then libvirtd's
// confirmation that it accepts the host's client certificate.
func dialLibvirtd(ctx context.Context, check *CheckHostOptions, c *ParsedCredentials) error {
	roots, inter := libvirtdial.SplitCAs(c.CAs)
	err := libvirtdial.Dial(ctx, &libvirtdial.Options{
		Addr:          check.DialAddr,
		ServerName:    check.ServerName,
		Roots:         roots,
		Intermediates: inter,
		Certificate: &tls.Certificate{
			Certificate: rawChain(c.Chain[:len(c.Chain)-1]),
			PrivateKey:  c.Key,
			Leaf:        c.Leaf,
		},
		CRLs:    c.revoked,
		Timeout: check.Timeout,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDialFailed, err)
	}
	return nil
}

// rawChain returns the DER of certs (the leaf and intermediates, not the
// root).
func rawChain(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, 0, len(certs))
	for _, c := range certs {
		out = append(out, c.Raw)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// readHostFile reads a host file under Root, resolving a symbolic link in
// its last component the way the host will: an absolute target is a host
// path, so it is looked up under Root too.
func (o *Config) readHostFile(hostPath string) ([]byte, error) {
	for range maxLinkHops {
		disk := o.DiskPath(hostPath)
		target, err := os.Readlink(disk)
		if err != nil {
			// Not a link (or missing): read it as it is.
			return readBounded(disk)
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(hostPath), target)
		}
		hostPath = target
	}
	return nil, fmt.Errorf("libvirttls: %s: too many levels of symbolic links", hostPath)
}
