package migration

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// PlanOptions tune NewPlan. The zero value plans native TLS for two
// secured hosts and refuses every other combination.
type PlanOptions struct {
	// Tunnelled chooses Tunnelled instead of NativeTLS for two secured
	// hosts.
	Tunnelled bool

	// InsecureAllowUnsecuredMigration lets two unsecured hosts migrate
	// over qemu+tcp, with libvirt's control connection and the guest's
	// memory in clear, as CloudStack does for hosts it never secured.
	// Without it such a plan fails with ErrUnsecured. It never allows a
	// migration between a secured and an unsecured host.
	InsecureAllowUnsecuredMigration bool

	// ExtraFlags are added to the plan's flags, e.g.
	// FlagAutoConverge|FlagPersistDest. They may not hold the flags the
	// transport decides (FlagTLS, FlagPeerToPeer, FlagTunnelled).
	ExtraFlags Flags

	// PKIPath, if set, is added to the destination URI as
	// ?pkipath=DIR: the directory holding the client's cacert.pem,
	// clientcert.pem and clientkey.pem (and optionally cacrl.pem). If
	// empty, libvirt uses its default paths (/etc/pki/CA/cacert.pem,
	// /etc/pki/libvirt/clientcert.pem and private/clientkey.pem for
	// root). With a tunnelled (peer-to-peer) migration it is the source
	// libvirtd, not the caller, that reads it.
	PKIPath string
}

// Plan is how one migration is to run: what a caller passes to libvirt
// bindings (DestinationURI, Flags and Params for virDomainMigrate3 or
// virDomainMigrateToURI3) or to `virsh migrate` (VirshArgs).
type Plan struct {
	// Source and Destination are the hosts the plan was made for.
	Source, Destination Host

	// Transport is the chosen transport.
	Transport Transport

	// SourceURI is the libvirt URI of the source host, for a caller that
	// connects to it (virsh -c, virConnectOpen).
	SourceURI string

	// DestinationURI is the libvirt URI of the destination host, e.g.
	// "qemu+tls://kvm2.example.org/system".
	DestinationURI string

	// MigrateURI is the address of the memory stream
	// (VIR_MIGRATE_PARAM_URI), e.g. "tcp://[2001:db8::2]:49152", or
	// empty for a tunnelled migration, whose stream has no address of
	// its own.
	MigrateURI string

	// TLSDestination (VIR_MIGRATE_PARAM_TLS_DESTINATION, libvirt 6.0
	// and later) is the name the source QEMU checks the destination's
	// certificate against instead of MigrateURI's host. It is empty when
	// the certificate carries the MigrateURI host, or when the plan did
	// not know the certificate.
	TLSDestination string

	// Flags are the libvirt migration flags: always FlagLive, plus the
	// transport's flags and PlanOptions.ExtraFlags.
	Flags Flags
}

// Param is one typed parameter of virDomainMigrate3, all of which a plan
// sets are strings.
type Param struct {
	Name  string
	Value string
}

// Names of the virDomainMigrate3 parameters a plan sets.
const (
	ParamURI            = "migrate_uri"     // VIR_MIGRATE_PARAM_URI
	ParamTLSDestination = "tls.destination" // VIR_MIGRATE_PARAM_TLS_DESTINATION
)

// NewPlan chooses the transport for migrating a guest from src to dst
// from the security states of both hosts:
//
//   - two secured hosts: NativeTLS (or Tunnelled with PlanOptions.Tunnelled),
//     so that the guest's memory is encrypted too, not only libvirt's
//     control connection;
//   - two unsecured hosts: PlainTCP, only with
//     PlanOptions.InsecureAllowUnsecuredMigration, else ErrUnsecured;
//   - one of each: a *SecurityMismatchError naming both hosts;
//   - a host in StateFailing (secured, but its check failed): an error
//     wrapping ErrHostFailing, whatever opts say, so that a broken secured
//     host is never planned as an unsecured one; StateUnknown:
//     ErrStateUnknown.
//
// opts may be nil. NewPlan does no I/O; Preflight checks that the
// destination will accept the source.
func NewPlan(src, dst Host, opts *PlanOptions) (*Plan, error) {
	var o PlanOptions
	if opts != nil {
		o = *opts
	}
	for _, h := range []struct {
		role string
		host *Host
	}{{"source", &src}, {"destination", &dst}} {
		if err := h.host.validate(h.role); err != nil {
			return nil, err
		}
		switch h.host.State {
		case StateSecured, StateUnsecured:
		case StateFailing:
			return nil, fmt.Errorf("%w: %s %s; fix it before migrating its guests or to it", ErrHostFailing, h.role, describeHost(h.host))
		default:
			return nil, fmt.Errorf("%w: %s %s is %s; detect it before migrating", ErrStateUnknown, h.role, h.host.label(), h.host.State)
		}
	}
	if bad := o.ExtraFlags & transportFlags; bad != 0 {
		return nil, fmt.Errorf("migration: ExtraFlags may not hold %v: the transport decides them", bad)
	}
	if strings.ContainsAny(o.PKIPath, "\x00\n") {
		return nil, errors.New("migration: PKIPath holds a NUL or newline")
	}

	var tr Transport
	switch {
	case src.State != dst.State:
		return nil, &SecurityMismatchError{Source: src, Destination: dst}
	case src.State == StateUnsecured && !o.InsecureAllowUnsecuredMigration:
		return nil, fmt.Errorf("%w: %s and %s (set InsecureAllowUnsecuredMigration to accept, or secure both hosts)",
			ErrUnsecured, describeHost(&src), describeHost(&dst))
	case src.State == StateUnsecured:
		tr = PlainTCP()
	case o.Tunnelled:
		tr = Tunnelled()
	default:
		tr = NativeTLS()
	}

	srcPort, dstPort := portOr(src.LibvirtPort, tr.defaultPort()), portOr(dst.LibvirtPort, tr.defaultPort())
	if sameAddress(src.Address, dst.Address) && srcPort == dstPort {
		return nil, fmt.Errorf("migration: source and destination are the same libvirtd, %s", hostPort(dst.Address, dstPort))
	}

	p := &Plan{
		Source:         src,
		Destination:    dst,
		Transport:      tr,
		SourceURI:      libvirtURI(tr.Scheme(), src.Address, src.LibvirtPort, o.PKIPath),
		DestinationURI: libvirtURI(tr.Scheme(), dst.Address, dst.LibvirtPort, o.PKIPath),
		Flags:          FlagLive | tr.flags() | o.ExtraFlags,
	}
	if tr != Tunnelled() {
		dataHost := dst.MigrationAddress
		if dataHost == "" {
			dataHost = dst.Address
		}
		p.MigrateURI = "tcp://" + hostPort(dataHost, dst.MigrationPort)
		if tr == NativeTLS() {
			name, err := tlsDestination(&dst, dataHost)
			if err != nil {
				return nil, err
			}
			p.TLSDestination = name
		}
	}
	return p, nil
}

func portOr(port, def int) int {
	if port == 0 {
		return def
	}
	return port
}

// sameAddress compares IP addresses by value ("::1" is "0:0::1") and
// host names case-insensitively, ignoring a final dot.
func sameAddress(a, b string) bool {
	if x, err := netip.ParseAddr(a); err == nil {
		y, err := netip.ParseAddr(b)
		return err == nil && x.Unmap() == y.Unmap()
	}
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// libvirtURI builds "scheme://host[:port]/system[?pkipath=DIR]".
func libvirtURI(scheme, host string, port int, pkiPath string) string {
	u := scheme + "://" + hostPort(host, port) + "/system"
	if pkiPath != "" {
		u += "?pkipath=" + escapeQueryValue(pkiPath)
	}
	return u
}

// escapeQueryValue percent-encodes everything but RFC 3986 unreserved
// characters and "/", which libvirt's URI parser decodes again.
func escapeQueryValue(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// tlsDestination returns the name the source QEMU must check the
// destination certificate against, or "" when dataHost itself will do.
func tlsDestination(dst *Host, dataHost string) (string, error) {
	if dst.TLSName != "" {
		if strings.EqualFold(dst.TLSName, dataHost) {
			return "", nil
		}
		return dst.TLSName, nil
	}
	cert := dst.Certificate
	if cert == nil {
		return "", nil
	}
	// QEMU (GnuTLS) compares the name the same way crypto/x509 does for
	// DNS names and IP addresses; a zone never appears in a certificate.
	host, _, _ := strings.Cut(dataHost, "%")
	if cert.VerifyHostname(host) == nil {
		return "", nil
	}
	for _, name := range cert.DNSNames {
		if !strings.HasPrefix(name, "*.") && checkDNSName(name) == nil {
			return name, nil
		}
	}
	for _, ip := range cert.IPAddresses {
		return ip.String(), nil
	}
	return "", fmt.Errorf("migration: destination %s: certificate %q carries no DNS name or IP address the source could check", dst.label(), cert.Subject)
}

// Params returns the string parameters of virDomainMigrate3 the plan
// sets: ParamURI and, when needed, ParamTLSDestination.
func (p *Plan) Params() []Param {
	var ps []Param
	if p.MigrateURI != "" {
		ps = append(ps, Param{ParamURI, p.MigrateURI})
	}
	if p.TLSDestination != "" {
		ps = append(ps, Param{ParamTLSDestination, p.TLSDestination})
	}
	return ps
}

// VirshArgs returns the arguments of `virsh -c SourceURI` that run the
// plan for the domain named domain, e.g.
//
//	migrate --live --tls --domain vm1 --desturi qemu+tls://kvm2/system --migrateuri tcp://kvm2
//
// Options are named (--domain, --desturi, ...) so that no value is taken
// for an option. Flags that virsh has no option for are refused.
func (p *Plan) VirshArgs(domain string) ([]string, error) {
	if domain == "" || strings.ContainsAny(domain, "\x00\n") {
		return nil, fmt.Errorf("migration: domain name %q is empty or holds a NUL or newline", domain)
	}
	opts, rest := p.Flags.virshOptions()
	if rest != 0 {
		return nil, fmt.Errorf("migration: virsh has no option for flags %v", rest)
	}
	args := append([]string{"migrate"}, opts...)
	args = append(args, "--domain", domain, "--desturi", p.DestinationURI)
	if p.MigrateURI != "" {
		args = append(args, "--migrateuri", p.MigrateURI)
	}
	if p.TLSDestination != "" {
		args = append(args, "--tls-destination", p.TLSDestination)
	}
	return args, nil
}
