package migration

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// State is the security state of a KVM host, as libvirttls detects it.
type State int

const (
	// StateUnknown is the zero value: nobody checked. Plan refuses to
	// choose a transport for a host in this state.
	StateUnknown State = iota
	// StateSecured: the host has complete, valid credentials and libvirtd
	// serves TLS with them.
	StateSecured
	// StateUnsecured: the host serves libvirt over plain TCP only.
	StateUnsecured
	// StateFailing: the host holds TLS credentials or configuration but
	// its check failed (an expired or revoked certificate, a missing
	// file, a failed dial, ...). It is neither secured nor unsecured:
	// NewPlan refuses it with ErrHostFailing, whatever the options say.
	StateFailing
)

// String returns "secured", "unsecured", "failing" or "unknown".
func (s State) String() string {
	switch s {
	case StateSecured:
		return "secured"
	case StateUnsecured:
		return "unsecured"
	case StateFailing:
		return "failing"
	case StateUnknown:
		return "unknown"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Host is one end of a migration.
type Host struct {
	// Name names the host in messages, e.g. the platform's host name or
	// ID. If empty, Address is used.
	Name string

	// Address is where libvirtd and the migration stream are reached: a
	// DNS name, an IPv4 address or an IPv6 address (without brackets; a
	// zone such as "fe80::1%eth0" is allowed). It is required.
	Address string

	// State is the host's security state. NewPlan accepts only
	// StateSecured and StateUnsecured.
	State State

	// Reason says why the host is not secured, as libvirttls reports it;
	// it is shown in ErrSecurityMismatch messages. Optional.
	Reason string

	// LibvirtPort is libvirtd's port for the chosen transport. If 0,
	// 16514 (libvirtd's tls_port) for qemu+tls and 16509 (tcp_port) for qemu+tcp.
	LibvirtPort int

	// MigrationAddress is the address of the destination's migration data
	// stream (qemu.conf migration_host), if it differs from Address, such
	// as a dedicated migration network. If empty, Address is used.
	MigrationAddress string

	// MigrationPort fixes the destination's data-stream port. If 0, the
	// destination libvirtd picks one from its migration_port_min..max
	// range (49152-49215 by default).
	MigrationPort int

	// Certificate is the destination's certificate as the platform issued
	// it (the server-cert.pem of its migration TLS directory). When it
	// does not carry the migration address, Plan sets the TLS destination
	// to a name it does carry, so that the source QEMU's name check
	// passes. Optional: without it the migration address must be in the
	// certificate.
	Certificate *x509.Certificate

	// TLSName, if set, is the TLS destination name itself, overriding the
	// choice from Certificate.
	TLSName string
}

// label is how messages name h: "Name (Address)" or "Address".
func (h *Host) label() string {
	switch {
	case h.Name == "":
		return h.Address
	case h.Name == h.Address, h.Address == "":
		return h.Name
	}
	return h.Name + " (" + h.Address + ")"
}

// validate checks the parts of h every plan needs.
func (h *Host) validate(role string) error {
	if err := checkHost(h.Address); err != nil {
		return fmt.Errorf("migration: %s %s: address: %w", role, h.label(), err)
	}
	if h.MigrationAddress != "" {
		if err := checkHost(h.MigrationAddress); err != nil {
			return fmt.Errorf("migration: %s %s: migration address: %w", role, h.label(), err)
		}
	}
	for _, p := range []struct {
		name string
		port int
	}{{"libvirt port", h.LibvirtPort}, {"migration port", h.MigrationPort}} {
		if p.port < 0 || p.port > 65535 {
			return fmt.Errorf("migration: %s %s: %s %d is out of range", role, h.label(), p.name, p.port)
		}
	}
	if h.TLSName != "" {
		if err := checkHost(h.TLSName); err != nil {
			return fmt.Errorf("migration: %s %s: TLS name: %w", role, h.label(), err)
		}
	}
	return nil
}

// checkHost accepts a DNS name or an IP address (IPv6 without brackets,
// optionally with a zone), and refuses anything that would change the
// meaning of a URI or a command line it is put into.
func checkHost(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > 253+16 {
		return fmt.Errorf("%d bytes is too long for a host", len(s))
	}
	if strings.HasPrefix(s, "[") {
		return fmt.Errorf("%q: give an IPv6 address without brackets", s)
	}
	if strings.Contains(s, ":") {
		addr, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%q is neither a host name nor an IP address", s)
		}
		if z := addr.Zone(); z != "" && !isToken(z) {
			return fmt.Errorf("%q: bad IPv6 zone", s)
		}
		return nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	return checkDNSName(s)
}

// checkDNSName accepts an RFC 1123 host name, optionally with a final dot.
func checkDNSName(s string) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%q is not a valid host name", s)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a valid host name", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a valid host name", s)
			}
		}
	}
	return nil
}

// hostPort joins host and port for a URI authority, bracketing IPv6
// addresses and escaping a zone's "%" as RFC 6874 asks. Port 0 is left
// out.
func hostPort(host string, port int) string {
	h := host
	if strings.Contains(host, ":") {
		h = "[" + strings.ReplaceAll(host, "%", "%25") + "]"
	}
	if port == 0 {
		return h
	}
	return h + ":" + fmt.Sprint(port)
}

// hostPortDial is hostPort for net.Dial: the zone stays unescaped.
func hostPortDial(host string, port int) string {
	return net.JoinHostPort(host, fmt.Sprint(port))
}
