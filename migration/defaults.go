package migration

import (
	"time"
)

// Ports and timeouts used when a Host or a PreflightConfig leaves them
// unset. They are libvirt's own defaults (libvirtd.conf tls_port and
// tcp_port, qemu.conf migration_port_min).
const (
	// DefaultTLSPort is libvirtd's TLS port (tls_port).
	DefaultTLSPort = 16514
	// DefaultTCPPort is libvirtd's plain TCP port (tcp_port).
	DefaultTCPPort = 16509
	// DefaultMigrationPortMin is the first port of the range a destination
	// QEMU listens on for the migration data stream (migration_port_min).
	DefaultMigrationPortMin = 49152
	// DefaultMigrationPortMax is the last port of that range
	// (migration_port_max).
	DefaultMigrationPortMax = 49215

	// DefaultPreflightTimeout bounds a Preflight whose context has no
	// deadline: TCP connect, TLS handshake and libvirt's confirmation byte.
	DefaultPreflightTimeout = 10 * time.Second

	// maxErrorText bounds the text Classify looks at, and maxExtracted
	// the length of a name or path it extracts from it.
	maxErrorText = 64 << 10
	maxExtracted = 1024
)
