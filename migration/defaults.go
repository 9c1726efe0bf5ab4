package migration

import (
	"time"
)

// Ports and timeouts used when a Host or PreflightOptions leave them
// unset: libvirt's own defaults (libvirtd.conf tls_port and tcp_port).
// The fields that use them document them.
const (
	defaultTLSPort = 16514 // libvirtd's tls_port
	defaultTCPPort = 16509 // libvirtd's tcp_port

	// defaultPreflightTimeout bounds a Preflight whose context has no
	// deadline and whose Timeout is zero.
	defaultPreflightTimeout = 10 * time.Second

	// maxErrorText bounds the text Classify looks at, and maxExtracted
	// the length of a name or path it extracts from it.
	maxErrorText = 64 << 10
	maxExtracted = 1024
)
