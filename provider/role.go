package provider

import (
	"crypto/x509"
	"fmt"
)

// Role is what a certificate is for. It decides the extended key usages,
// and with them which TLS endpoints will accept the certificate.
type Role int

const (
	// RoleUnspecified is the zero Role. Issue requests must name a role.
	RoleUnspecified Role = iota
	// RoleHost is a hypervisor host: one certificate serves as TLS server
	// and TLS client (libvirtd, QEMU VNC, QEMU migration in both
	// directions).
	RoleHost
	// RoleClient is a client-only identity, such as a console proxy
	// reaching QEMU's VNC server or a management server dialling libvirtd.
	RoleClient
	// RoleServer is a server-only identity, such as a management server's
	// agent port.
	RoleServer
)

var roleNames = [...]string{
	RoleUnspecified: "unspecified",
	RoleHost:        "host",
	RoleClient:      "client",
	RoleServer:      "server",
}

// String returns the role's name: "host", "client", "server" or
// "unspecified".
func (r Role) String() string {
	if r >= 0 && int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole parses a role name as printed by [Role.String].
func ParseRole(name string) (Role, error) {
	for r, n := range roleNames {
		if n == name && Role(r) != RoleUnspecified {
			return Role(r), nil
		}
	}
	return RoleUnspecified, fmt.Errorf("provider: unknown role %q (want host, client or server)", name)
}

// Valid reports whether r is one of the defined roles other than
// RoleUnspecified.
func (r Role) Valid() bool {
	return r == RoleHost || r == RoleClient || r == RoleServer
}

// ExtKeyUsages returns the extended key usages a certificate of this role
// carries.
func (r Role) ExtKeyUsages() []x509.ExtKeyUsage {
	switch r {
	case RoleHost:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case RoleClient:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case RoleServer:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	return nil
}

// RoleOf infers the role of a certificate from its extended key usages. A
// certificate without extended key usages (as CloudStack issues them) is
// usable for both ends and counts as RoleHost.
func RoleOf(cert *x509.Certificate) Role {
	var server, client bool
	if len(cert.ExtKeyUsage) == 0 && len(cert.UnknownExtKeyUsage) == 0 {
		return RoleHost
	}
	for _, u := range cert.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			server = true
		case x509.ExtKeyUsageClientAuth:
			client = true
		case x509.ExtKeyUsageAny:
			server, client = true, true
		}
	}
	switch {
	case server && client:
		return RoleHost
	case server:
		return RoleServer
	case client:
		return RoleClient
	}
	return RoleUnspecified
}
