package libvirttls

import (
	"crypto/x509"
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kvmpki/kvmpki/libvirtconf"
)

// InstallMode chooses how the PKI files are installed.
type InstallMode int

const (
	// InstallCopies writes every file as a copy of the credentials. It
	// is the default: it survives the agent rewriting its files and
	// works under AppArmor, which checks a link's target.
	InstallCopies InstallMode = iota
	// InstallSymlinks links certificates and root-only keys to the files
	// in Config.CredentialsDir, as CloudStack does; the keys QEMU reads
	// stay copies (see the package documentation).
	InstallSymlinks
)

// Config describes a host to secure, for [NewPlan] and [CheckHost] alike.
// The zero value secures the real host at "/" with copies, the default
// ports and QEMU group, any client certificate from the CA, and
// migrate_tls_force left alone. A Config must not be modified after being
// passed to a function of this package; derive others with Clone.
type Config struct {
	// Root is the directory the host's filesystem is rooted at: every
	// file is read and written under it. If empty, "/" is used.
	Root string

	// RootedConfigPaths makes libvirtd.conf and qemu.conf name the paths
	// under Root instead of the host paths (/etc/pki/...). It is for
	// daemons started from a temporary root, as in tests; on a real host
	// Root is "/" and it changes nothing.
	RootedConfigPaths bool

	// Install chooses copies (InstallCopies, the zero value) or symbolic
	// links (InstallSymlinks).
	Install InstallMode

	// CredentialsDir is the host path of the agent's cloud.* files, the
	// targets of InstallSymlinks links. If empty, "/etc/cloudstack/agent".
	CredentialsDir string

	// QEMUGroup is the group QEMU runs as, which gets read access to the
	// keys in /etc/pki/libvirt-vnc and /etc/pki/qemu. If empty, the
	// group set by ExtraQEMU, else the group= of qemu.conf under Root,
	// else "libvirt-qemu" (Debian's; Fedora uses "qemu"). As in
	// qemu.conf, "+GID" names a group by number.
	//
	// The group is looked up only when it matters, when the plan runs as
	// root. If it does not exist, a plan for the real host (Root "/") is
	// still made, and its Diff shown, but [Plan.Apply] refuses it with
	// [ErrQEMUGroupMissing] (Debian's libvirt-daemon-system creates
	// libvirt-qemu); a plan under another root gives QEMU's keys the
	// caller's group instead.
	QEMUGroup string

	// LookupGroup resolves a group name, as os/user.LookupGroup does. If
	// nil, os/user.LookupGroup is used; tests pass their own, so that no
	// result depends on the groups of the machine running them.
	LookupGroup func(name string) (*user.Group, error)

	// TLSPort and TCPPort are libvirtd's tls_port and tcp_port. Zero
	// means 16514 and 16509, libvirt's defaults.
	TLSPort, TCPPort int

	// ListenAddr, if set, is libvirtd's listen_addr.
	ListenAddr string

	// AllowedClients are certificates allowed to connect to libvirtd:
	// their DNs ([AllowedDN]) go into tls_allowed_dn_list together with
	// AllowedDNs. If both are nil the list is left unset and libvirtd
	// accepts any certificate the CA issued; a non-nil empty AllowedDNs
	// rejects every client, as libvirtd does with an empty list. Include
	// the host's own certificate for CheckHost's dial, and every host
	// that migrates to this one (peer-to-peer migration connects with the
	// source libvirtd's client certificate).
	AllowedClients []*x509.Certificate

	// AllowedDNs are tls_allowed_dn_list patterns ('*' matches any run of
	// characters), in GnuTLS order.
	AllowedDNs []string

	// MigrateTLSForce sets migrate_tls_force=1: the host then refuses
	// incoming migrations that are neither native TLS nor tunnelled.
	// If false, migrate_tls_force is left as it is.
	MigrateTLSForce bool

	// ExtraLibvirtd and ExtraQEMU are set after the TLS settings, in
	// order: for example unix_sock_dir, log_outputs or host_uuid for a
	// test daemon, or user, group and security_driver.
	ExtraLibvirtd, ExtraQEMU []libvirtconf.Setting

	// Time returns the current time for certificate checks. If nil,
	// time.Now is used.
	Time func() time.Time

	// Units tells the state of libvirtd's systemd units, which decides
	// the plan's service actions and whether CheckHost finds
	// libvirtd-tcp.socket open. If nil: on Root "/" with systemd
	// running, [Systemctl]; otherwise [UnitFiles] under Root.
	Units Units
}

func (o *Config) root() string {
	if o == nil || o.Root == "" {
		return "/"
	}
	return o.Root
}

func (o *Config) now() time.Time {
	if o == nil || o.Time == nil {
		return time.Now()
	}
	return o.Time()
}

// DiskPath returns where the host path hostPath (such as [CACertPath]) is
// on disk: under Root.
func (o *Config) DiskPath(hostPath string) string {
	return filepath.Join(o.root(), hostPath)
}

// ConfigPath returns the path the configuration names for hostPath: the
// host path itself, or the path under Root with RootedConfigPaths.
func (o *Config) ConfigPath(hostPath string) string {
	if o != nil && o.RootedConfigPaths {
		return o.DiskPath(hostPath)
	}
	return hostPath
}

func (o *Config) credentialsDir() string {
	if o == nil || o.CredentialsDir == "" {
		return "/etc/cloudstack/agent"
	}
	return o.CredentialsDir
}

func portOr(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}

// LibvirtdSettings returns the libvirtd.conf settings of a secured host:
// TLS on and plain TCP off (listen_tls, listen_tcp, tls_port, tcp_port,
// listen_addr if set), the certificate-based auth_tls="none", the
// credentials (key_file, cert_file, ca_file, and crl_file when withCRL),
// both certificate checks on (tls_no_verify_certificate and
// tls_no_sanity_certificate = 0) and tls_allowed_dn_list when the options
// name allowed clients; then ExtraLibvirtd. Unlike "cloudstack-setup-agent
// -s" it does not write auth_tcp="none".
func (o *Config) LibvirtdSettings(withCRL bool) ([]libvirtconf.Setting, error) {
	if o == nil {
		o = &Config{}
	}
	tls, tcp := portOr(o.TLSPort, defaultTLSPort), portOr(o.TCPPort, defaultTCPPort)
	if tls < 1 || tls > 65535 || tcp < 1 || tcp > 65535 {
		return nil, fmt.Errorf("libvirttls: port out of range (tls %d, tcp %d)", tls, tcp)
	}
	s := []libvirtconf.Setting{
		{Key: "listen_tls", Value: libvirtconf.IntValue(1)},
		{Key: "listen_tcp", Value: libvirtconf.IntValue(0)},
		{Key: "tls_port", Value: libvirtconf.StringValue(strconv.Itoa(tls))},
		{Key: "tcp_port", Value: libvirtconf.StringValue(strconv.Itoa(tcp))},
	}
	if o.ListenAddr != "" {
		s = append(s, libvirtconf.Setting{Key: "listen_addr", Value: libvirtconf.StringValue(o.ListenAddr)})
	}
	// auth_tcp is left alone: libvirt's default is "sasl", and the TCP
	// socket is closed anyway (see Plan.Actions). The certificate checks
	// are forced on: either one off lets in what TLS should refuse.
	s = append(s,
		libvirtconf.Setting{Key: "auth_tls", Value: libvirtconf.StringValue("none")},
		libvirtconf.Setting{Key: "tls_no_verify_certificate", Value: libvirtconf.IntValue(0)},
		libvirtconf.Setting{Key: "tls_no_sanity_certificate", Value: libvirtconf.IntValue(0)},
		libvirtconf.Setting{Key: "key_file", Value: libvirtconf.StringValue(o.ConfigPath(ServerKeyPath))},
		libvirtconf.Setting{Key: "cert_file", Value: libvirtconf.StringValue(o.ConfigPath(ServerCertPath))},
		libvirtconf.Setting{Key: "ca_file", Value: libvirtconf.StringValue(o.ConfigPath(CACertPath))},
	)
	if withCRL {
		s = append(s, libvirtconf.Setting{Key: "crl_file", Value: libvirtconf.StringValue(o.ConfigPath(CRLPath))})
	}
	if o.AllowedClients != nil || o.AllowedDNs != nil {
		dns := append([]string{}, o.AllowedDNs...)
		for _, c := range o.AllowedClients {
			dn, err := AllowedDN(c)
			if err != nil {
				return nil, err
			}
			dns = append(dns, dn)
		}
		s = append(s, libvirtconf.Setting{Key: "tls_allowed_dn_list", Value: libvirtconf.StringListValue(dns...)})
	}
	return append(s, o.ExtraLibvirtd...), nil
}

// QEMUSettings returns the qemu.conf settings of a secured host: VNC over
// TLS with client certificates (vnc_tls, vnc_tls_x509_cert_dir,
// vnc_tls_x509_verify), native TLS for migration streams
// (migrate_tls_x509_cert_dir, migrate_tls_x509_verify) and, with
// MigrateTLSForce, migrate_tls_force=1; then ExtraQEMU.
func (o *Config) QEMUSettings() []libvirtconf.Setting {
	if o == nil {
		o = &Config{}
	}
	s := []libvirtconf.Setting{
		{Key: "vnc_tls", Value: libvirtconf.IntValue(1)},
		{Key: "vnc_tls_x509_cert_dir", Value: libvirtconf.StringValue(o.ConfigPath(VNCDir))},
		{Key: "vnc_tls_x509_verify", Value: libvirtconf.IntValue(1)},
		{Key: "migrate_tls_x509_cert_dir", Value: libvirtconf.StringValue(o.ConfigPath(QEMUDir))},
		{Key: "migrate_tls_x509_verify", Value: libvirtconf.IntValue(1)},
	}
	if o.MigrateTLSForce {
		s = append(s, libvirtconf.Setting{Key: "migrate_tls_force", Value: libvirtconf.IntValue(1)})
	}
	return append(s, o.ExtraQEMU...)
}

// Clone returns a copy of o that shares no slice with it, to derive
// options for another host or port without touching o.
func (o *Config) Clone() *Config {
	if o == nil {
		return nil
	}
	c := *o
	c.AllowedClients = cloneNil(o.AllowedClients)
	c.AllowedDNs = cloneNil(o.AllowedDNs)
	c.ExtraLibvirtd = cloneNil(o.ExtraLibvirtd)
	c.ExtraQEMU = cloneNil(o.ExtraQEMU)
	return &c
}

// cloneNil is slices.Clone keeping nil and empty apart, which matters for
// AllowedDNs (nil: list unset; empty: every client refused).
func cloneNil[S ~[]E, E any](s S) S {
	if s == nil {
		return nil
	}
	return append(make(S, 0, len(s)), s...)
}
