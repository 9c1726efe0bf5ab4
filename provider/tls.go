package provider

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"time"
)

// DefaultVerifyTimeout bounds one call of the hooks returned by
// [VerifyConnection] and [VerifyServerConnection], since crypto/tls gives
// them no context.
const DefaultVerifyTimeout = 10 * time.Second

// VerifyConnection returns a hook for [crypto/tls.Config.VerifyConnection]
// that passes the peer's certificates to v.
//
// On a server (usage x509.ExtKeyUsageClientAuth) set ClientAuth to
// tls.RequireAnyClientCert, or tls.RequestClientCert when the provider
// admits clients without a certificate, and leave ClientCAs nil: the hook
// does the chain verification, so the provider's expired-certificate and
// strictness policies apply.
//
// On a client (usage x509.ExtKeyUsageServerAuth) prefer
// [VerifyServerConnection], which also works when the client dials an IP
// address: crypto/tls sends no SNI for IP literals, so
// ConnectionState.ServerName, which this hook passes on, is then empty and
// no name would be checked.
//
// crypto/tls calls the hook on every handshake, including resumed ones.
func VerifyConnection(v PeerVerifier, usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		req := &VerifyRequest{Certificates: cs.PeerCertificates, Usage: usage}
		if usage == x509.ExtKeyUsageServerAuth {
			req.ServerName = cs.ServerName
		}
		return verifyBounded(v, req)
	}
}

// VerifyServerConnection returns a hook for a client's
// [crypto/tls.Config.VerifyConnection] that has v judge the server's
// certificates for serverName, the DNS name or IP address the client
// dialled (normally the same as the client's tls.Config.ServerName). If
// serverName is empty, the SNI sent is used.
//
// Keep RootCAs set to the CA bundle so crypto/tls verifies the chain and
// name as usual; the hook adds the provider's checks, such as revocation,
// and runs on resumed sessions too.
func VerifyServerConnection(v PeerVerifier, serverName string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		name := serverName
		if name == "" {
			name = cs.ServerName
		}
		return verifyBounded(v, &VerifyRequest{Certificates: cs.PeerCertificates, Usage: x509.ExtKeyUsageServerAuth, ServerName: name})
	}
}

func verifyBounded(v PeerVerifier, req *VerifyRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultVerifyTimeout)
	defer cancel()
	return v.VerifyPeer(ctx, req)
}
