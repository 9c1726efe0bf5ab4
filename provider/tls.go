package provider

import (
	"context"
	"crypto/tls"
	"errors"
	"time"
)

// VerifyConnectionOptions tunes the hooks of [VerifyClientConnection] and
// [VerifyServerConnection]. The zero value, like a nil pointer, is the
// default.
type VerifyConnectionOptions struct {
	// Timeout bounds one call of the hook, since crypto/tls gives hooks
	// no context. If zero, 10 seconds are allowed; a negative Timeout is
	// treated as zero.
	Timeout time.Duration
}

func (o *VerifyConnectionOptions) timeout() time.Duration {
	if o == nil || o.Timeout <= 0 {
		return defaultVerifyTimeout
	}
	return o.Timeout
}

// errNoServerName is the refusal of a server hook built without a name.
var errNoServerName = errors.New("provider: VerifyServerConnection needs the name or address that was dialled")

// VerifyClientConnection returns a hook for a server's
// [crypto/tls.Config.VerifyConnection] that has v judge the client's
// certificates for client authentication. opts may be nil.
//
// Set ClientAuth to tls.RequireAnyClientCert, or tls.RequestClientCert
// when the provider admits clients without a certificate, and leave
// ClientCAs nil: the hook does the chain verification, so the provider's
// expired-certificate and strictness policies apply.
//
// crypto/tls calls the hook on every handshake, including resumed ones, so
// a client revoked after its first connection is refused when it resumes.
func VerifyClientConnection(v PeerVerifier, opts *VerifyConnectionOptions) func(tls.ConnectionState) error {
	timeout := opts.timeout()
	return func(cs tls.ConnectionState) error {
		return verifyBounded(v, timeout, &VerifyRequest{Certificates: cs.PeerCertificates, Usage: UsageClientAuth})
	}
}

// VerifyServerConnection returns a hook for a client's
// [crypto/tls.Config.VerifyConnection] that has v judge the server's
// certificates for server authentication and for serverName, the DNS
// name or IP address the client dialled. opts may be nil.
//
// serverName is required, and it is the only name checked: the SNI of
// the connection is never used, because crypto/tls sends none for an IP
// literal and the check would then accept any host's server certificate.
// A hook built with an empty serverName refuses every handshake.
//
// Keep RootCAs set to the CA bundle so crypto/tls verifies the chain and
// name as usual; the hook adds the provider's checks, such as revocation,
// and runs on resumed sessions too.
func VerifyServerConnection(v PeerVerifier, serverName string, opts *VerifyConnectionOptions) func(tls.ConnectionState) error {
	timeout := opts.timeout()
	return func(cs tls.ConnectionState) error {
		if serverName == "" {
			return errNoServerName
		}
		return verifyBounded(v, timeout, &VerifyRequest{Certificates: cs.PeerCertificates, Usage: UsageServerAuth, ServerName: serverName})
	}
}

func verifyBounded(v PeerVerifier, timeout time.Duration, req *VerifyRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return v.VerifyPeer(ctx, req)
}
