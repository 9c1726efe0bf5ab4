package migration

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// ErrSecurityMismatch is returned (wrapped in a *SecurityMismatchError)
// when one host of a migration is secured and the other is not. A secured
// host's guests may move only to secured hosts: the memory of a VM on a
// secured host would otherwise cross the network in clear.
var ErrSecurityMismatch = errors.New("migration: hosts differ in security state")

// ErrUnsecured is returned when both hosts are unsecured and the caller
// did not set PlanOptions.InsecureAllowUnsecuredMigration.
var ErrUnsecured = errors.New("migration: both hosts are unsecured; the guest's memory would cross the network in clear")

// ErrStateUnknown is returned when a host's security state is
// StateUnknown: nobody checked it.
var ErrStateUnknown = errors.New("migration: host security state is unknown")

// ErrHostFailing is returned when a host's security state is
// StateFailing: it holds TLS credentials or configuration, but its check
// failed. Its guests do not migrate in either direction until it is
// fixed, whatever the insecure options say: planning it as unsecured
// would send a secured host's guest memory in clear.
var ErrHostFailing = errors.New("migration: host is secured but its security check failed")

// SecurityMismatchError names both hosts of a refused migration and their
// states. It wraps ErrSecurityMismatch.
type SecurityMismatchError struct {
	Source, Destination Host
}

func (e *SecurityMismatchError) Error() string {
	why := "a secured host's guests move only to secured hosts, or their memory would cross the network in clear"
	fix := "secure " + e.Destination.label() + " or choose a secured destination"
	if e.Source.State != StateSecured {
		why = "an unsecured host has no credentials for a secured host's TLS port, and would send the memory in clear"
		fix = "secure " + e.Source.label() + " or choose an unsecured destination"
	}
	return fmt.Sprintf("migration: refusing to migrate from %s to %s: %s; %s",
		describeHost(&e.Source), describeHost(&e.Destination), why, fix)
}

// describeHost is "name (address, state[: reason])".
func describeHost(h *Host) string {
	var b strings.Builder
	if h.Name != "" && h.Name != h.Address {
		b.WriteString(h.Name + " (" + h.Address + ", ")
	} else {
		b.WriteString(h.Address + " (")
	}
	b.WriteString(h.State.String())
	if h.Reason != "" && h.State != StateSecured {
		b.WriteString(": " + h.Reason)
	}
	b.WriteString(")")
	return b.String()
}

// Unwrap returns ErrSecurityMismatch.
func (e *SecurityMismatchError) Unwrap() error { return ErrSecurityMismatch }

// Reasons a migration, or the preflight of one, fails. Classify maps
// libvirt's and QEMU's error texts to them, Preflight returns them in a
// *PreflightError; test with errors.Is.
var (
	// ErrNameMismatch: the destination's certificate does not carry the
	// name the source checked (the host of the URI, or the TLS
	// destination). Set Host.Certificate or Host.TLSName, or reissue the
	// certificate with the migration address. It is the same value as
	// provider.ErrNameMismatch.
	ErrNameMismatch = pkicore.ErrNameMismatch
	// ErrUnknownAuthority: a certificate was not issued by a CA the other
	// side trusts. It is the same value as provider.ErrUnknownAuthority.
	ErrUnknownAuthority = pkicore.ErrUnknownAuthority
	// ErrRevoked: a certificate is on the CA's revocation list. It is
	// the same value as provider.ErrRevoked.
	ErrRevoked = pkicore.ErrRevoked
	// ErrExpired: a certificate has expired, or is not valid yet. It is
	// the same value as provider.ErrExpired.
	ErrExpired = pkicore.ErrExpired
	// ErrClientCertificateMissing: the destination received no client
	// certificate from the source: no client-cert.pem in the source's
	// migration TLS directory (or no clientcert.pem for libvirt), or one
	// from a CA the destination does not trust, which GnuTLS does not
	// send.
	ErrClientCertificateMissing = errors.New("migration: source presented no client certificate")
	// ErrClientRefused: the destination closed the TLS connection after
	// the handshake, refusing the source's client certificate (missing,
	// from another CA, revoked, expired, or a DN outside
	// tls_allowed_dn_list); the destination's log says which.
	ErrClientRefused = errors.New("migration: destination refused the source's client certificate")
	// ErrCredentialsUnreadable: libvirt or QEMU could not read a
	// certificate or key file: missing, wrong owner or mode, denied by
	// AppArmor, or created after the VM started in its own mount
	// namespace.
	ErrCredentialsUnreadable = errors.New("migration: TLS credentials not readable")
	// ErrDNNotAllowed: the destination libvirtd's tls_allowed_dn_list
	// does not list the source's certificate DN.
	ErrDNNotAllowed = errors.New("migration: source certificate DN not in the destination's tls_allowed_dn_list")
	// ErrTLSRequired: the destination sets migrate_tls_force=1 and the
	// migration asked for neither VIR_MIGRATE_TLS nor tunnelling.
	ErrTLSRequired = errors.New("migration: destination accepts only TLS migrations")
	// ErrSameHost: both libvirtd instances have the same host UUID.
	ErrSameHost = errors.New("migration: source and destination are the same host (same host_uuid)")
	// ErrPortClosed: nothing listens on the destination's port (libvirtd
	// not listening for TLS, or a firewall rejecting).
	ErrPortClosed = errors.New("migration: destination port closed")
	// ErrUnreachable: the destination did not answer (no route, timeout,
	// a firewall dropping, or ports 49152-49215 blocked for the memory
	// stream).
	ErrUnreachable = errors.New("migration: destination unreachable")
)
