package migration

// Transport is how a migration crosses the network: which libvirt URI
// scheme carries the control connection, and what protects the memory
// stream. The set is closed: the only transports are those returned by
// NativeTLS, Tunnelled and PlainTCP, and they compare with ==.
type Transport interface {
	// Scheme is the libvirt URI scheme of the destination connection:
	// "qemu+tls" or "qemu+tcp".
	Scheme() string
	// EncryptsMemory reports whether the guest's memory (and NBD disk
	// data) is encrypted on the wire, not only libvirt's control
	// connection.
	EncryptsMemory() bool
	// String names the transport for people.
	String() string

	flags() Flags
	defaultPort() int
}

// NativeTLS is the transport for two secured hosts: libvirt's control
// connection over qemu+tls, and the QEMU-to-QEMU memory stream over QEMU's
// own TLS (VIR_MIGRATE_TLS), with the certificates of qemu.conf's
// migrate_tls_x509_cert_dir. It is the default for secured pairs.
func NativeTLS() Transport { return nativeTLS{} }

// Tunnelled is the documented alternative for two secured hosts: a
// peer-to-peer migration (VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_TUNNELLED)
// in which the memory stream travels inside the source libvirtd's
// qemu+tls connection to the destination libvirtd. It needs no migration
// ports and no QEMU certificates, but costs extra copies and CPU in both
// daemons, and libvirt may refuse it with non-shared disks, parallel
// connections or post-copy.
func Tunnelled() Transport { return tunnelled{} }

// PlainTCP is the transport of two unsecured hosts: qemu+tcp with the
// memory in clear. Plan returns it only with
// PlanOptions.InsecureAllowUnsecuredMigration.
func PlainTCP() Transport { return plainTCP{} }

type nativeTLS struct{}

func (nativeTLS) Scheme() string       { return "qemu+tls" }
func (nativeTLS) EncryptsMemory() bool { return true }
func (nativeTLS) String() string       { return "native TLS (qemu+tls, VIR_MIGRATE_TLS)" }
func (nativeTLS) flags() Flags         { return FlagTLS }
func (nativeTLS) defaultPort() int     { return defaultTLSPort }

type tunnelled struct{}

func (tunnelled) Scheme() string       { return "qemu+tls" }
func (tunnelled) EncryptsMemory() bool { return true }
func (tunnelled) String() string {
	return "tunnelled (qemu+tls, VIR_MIGRATE_PEER2PEER|VIR_MIGRATE_TUNNELLED)"
}
func (tunnelled) flags() Flags     { return FlagPeerToPeer | FlagTunnelled }
func (tunnelled) defaultPort() int { return defaultTLSPort }

type plainTCP struct{}

func (plainTCP) Scheme() string       { return "qemu+tcp" }
func (plainTCP) EncryptsMemory() bool { return false }
func (plainTCP) String() string       { return "plain TCP (qemu+tcp, memory in clear)" }
func (plainTCP) flags() Flags         { return 0 }
func (plainTCP) defaultPort() int     { return defaultTCPPort }
