package acme

import "time"

const (
	defaultName = "acme"
	userAgent   = "kvmpki-acmeplugin"

	// http01Prefix is where http-01 answers are served (RFC 8555
	// section 8.3).
	http01Prefix = "/.well-known/acme-challenge/"

	// defaultRSAKeySize is the size of a generated RSA key when the
	// request names none; generated keys are ECDSA P-256 unless RSA is
	// asked for.
	defaultRSAKeySize = 2048
	maxRSAKeySize     = 8192

	// maxRetryAfter bounds the wait a CA's Retry-After can ask for.
	maxRetryAfter = 7 * 24 * time.Hour
)
