// Package libvirtdial makes the TLS connection a libvirt client makes to
// libvirtd (virNetTLSSession, the qemu+tls:// transport), and nothing
// more: kvmpki's one copy of that rule, used by libvirttls's host check
// and migration's preflight.
//
// [Dial] first checks the client's own certificate (chain to the roots
// for client authentication, revocation), then dials, requires TLS 1.2 or
// later, verifies the server's chain for server authentication and its
// name (an IP literal is matched against IP SANs only, and sends no SNI),
// checks every chain found against the CRLs with package revocation in
// VerifyConnection, and finally reads the one confirmation byte libvirtd
// sends once it has accepted the client's certificate (it closes the
// connection instead when it refuses it).
//
// Every failure is an [*Error] naming the side at fault and a reason:
// one of this package's sentinels for network and protocol failures, or
// one of internal/pkicore's for a certificate (ErrRevoked, ErrExpired,
// ErrUnknownAuthority, ErrNameMismatch, ErrIncompatibleUsage,
// ErrNoPeerCertificate). Messages carry no package prefix: the public
// package wrapping one names itself.
package libvirtdial
