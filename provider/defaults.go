package provider

import "time"

// Defaults, documented on the fields that use them.
const (
	// defaultVerifyTimeout bounds one call of a TLS verification hook.
	defaultVerifyTimeout = 10 * time.Second

	// defaultMinRSAKeySize and defaultMaxRSAKeySize bound the RSA keys
	// CheckCSR accepts. Larger keys are refused because verifying them is
	// a cheap way to burn a CA's CPU.
	defaultMinRSAKeySize = 2048
	defaultMaxRSAKeySize = 8192

	// defaultMaxNames bounds the DNS names and IP addresses of one CSR or
	// request.
	defaultMaxNames = 100

	// maxCommonNameLength is ub-common-name from RFC 5280.
	maxCommonNameLength = 64

	// maxDNSNameLength is the longest DNS name (RFC 1035).
	maxDNSNameLength = 253
)
