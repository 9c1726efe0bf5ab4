package ca

import "time"

// Defaults, documented on the fields that use them. They follow
// CloudStack's ca.framework.* defaults where those are safe.
const (
	defaultProvider           = "root"
	defaultValidity           = 365 * 24 * time.Hour
	defaultBackgroundInterval = time.Hour
	defaultExpiryAlertPeriod  = 15 * 24 * time.Hour
	defaultManagementSAN      = "cloudstack.internal"
	defaultAgentPort          = 8250

	// minBackgroundInterval keeps the background task from hammering the
	// provider: CloudStack accepts any delay, including 0.
	minBackgroundInterval = time.Minute
	// maxValidityLimit is the longest leaf validity a Settings may allow.
	maxValidityLimit = 10 * 365 * 24 * time.Hour

	// caRefreshInterval is how long CA certificates are cached before the
	// provider is asked again (a rotation in issue 13 adds a CA).
	caRefreshInterval = time.Minute

	// crlRefreshFraction: a CRL is re-signed once this fraction of its
	// lifetime (ThisUpdate to NextUpdate) has passed.
	crlRefreshFraction = 2

	// ocspValidity is the NextUpdate of a signed OCSP response; a cached
	// response is re-signed once half of it has passed.
	ocspValidity = time.Hour
	// maxOCSPCache bounds the cached OCSP responses.
	maxOCSPCache = 200000
	// maxOCSPRequest bounds an OCSP request body or GET path.
	maxOCSPRequest = 4096
	// maxOCSPGetTries bounds the path tails tried as a GET request.
	maxOCSPGetTries = 16

	// Dialer backoff.
	defaultDialInitialBackoff = 500 * time.Millisecond
	defaultDialMaxBackoff     = 30 * time.Second
	defaultDialTimeout        = 10 * time.Second

	// Background task: renewals in flight, renewals started per second,
	// first retry delay, and how often one host's alert may repeat.
	defaultRenewalConcurrency = 4
	defaultRenewalRate        = 10.0
	defaultRetryBackoff       = time.Minute
	alertRepeat               = 24 * time.Hour

	// identityMargin keeps the management certificate's NotAfter this far
	// inside the CA's.
	identityMargin = time.Minute
)

// Provisioning over SSH ([SSHHost]).
const (
	defaultRemoteDir      = "/etc/cloudstack/agent"
	defaultSSHDialTimeout = 30 * time.Second
	defaultSSHStepTimeout = 5 * time.Minute
	// defaultReloadCommand makes libvirtd and every running guest's VNC
	// server read their TLS files again; a guest without VNC TLS answers
	// display-reload with an error, which is not the host's failure.
	defaultReloadCommand = `virt-admin server-update-tls libvirtd || exit; ` +
		`for d in $(virsh list --name); do virsh qemu-monitor-command "$d" ` +
		`'{"execute":"display-reload","arguments":{"type":"vnc","tls-certs":true}}' >/dev/null 2>&1 || ` +
		`echo "display-reload refused by $d (no VNC TLS?)" >&2; done; exit 0`

	// maxInstallInput bounds the certificate and bundle sent to a host.
	maxInstallInput = 1 << 20
	// maxRemoteStdout bounds what a host's command may print (a CSR).
	maxRemoteStdout = 64 << 10
	// killGrace is how long a host's command killed at its timeout has
	// to report its end before its session is closed.
	killGrace = time.Second
	// maxRemoteStderr is how much of a host's standard error an error
	// keeps.
	maxRemoteStderr = 4 << 10

	// defaultHelloTimeout bounds the wait for an agent's hello.
	defaultHelloTimeout = 10 * time.Second
	// maxAgentFrame bounds one message of the in-band transport (a
	// certificate and a CA bundle of two roots are a few KiB).
	maxAgentFrame = 1 << 20
	// maxAgentText bounds a peer's text kept in errors and logs.
	maxAgentText = 1 << 10
)
