package main

import "time"

// The server's bounds and timeouts, in one place.

// handshakeTimeout bounds an agent's TLS handshake.
const handshakeTimeout = 10 * time.Second

// A failed accept on the agent port is retried after a pause that starts
// at minAcceptRetry and doubles up to maxAcceptRetry.
const (
	minAcceptRetry = 5 * time.Millisecond
	maxAcceptRetry = time.Second
)

// provisionTimeout bounds the provisioning of one agent (its keystore
// setup, the issue, the install and the reload).
const provisionTimeout = 2 * time.Minute

// maxDurationDays bounds issueCertificate's duration before it is turned
// into a time.Duration (the Manager's MaxValidity refuses far less).
const maxDurationDays = 100 * 365

// verifyTimeout bounds a client certificate check.
const verifyTimeout = 10 * time.Second

// maxBody bounds a request body: a CSR is at most 64 KiB, so a megabyte
// leaves room for every parameter and refuses anything larger with 413.
const maxBody = 1 << 20

// maxErrorName bounds a client-supplied name quoted into an error.
const maxErrorName = 64

// The API server's timeouts: provisioning an agent takes seconds, so an
// answer may take up to provisionTimeout and a minute more.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	writeTimeout      = provisionTimeout + time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// defaultShutdownTimeout is how long a SIGTERM waits for API requests in
// flight (-shutdown-timeout).
const defaultShutdownTimeout = 10 * time.Second

// defaultAdminValidity is admin-cert's -validity.
const defaultAdminValidity = 30 * 24 * time.Hour

// adminMarker is the DNS name that marks an administrator's certificate,
// written by admin-cert alone. The client role alone does not: a console
// proxy's or a libvirt client's certificate is client-only too, and from
// the same CA. A reserved .invalid name, which no host carries.
const adminMarker = "administrator.mgmtserver.invalid"
