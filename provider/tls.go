package provider

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"time"
)

// DefaultVerifyTimeout bounds one call of the hook returned by
// [VerifyConnection], since crypto/tls gives the hook no context.
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
// On a client (usage x509.ExtKeyUsageServerAuth) keep RootCAs set to the CA
// bundle so crypto/tls verifies the chain and name as usual; the hook adds
// the provider's checks (revocation) and verifies the server's name against
// ConnectionState.ServerName once more.
//
// crypto/tls calls the hook on every handshake, including resumed ones.
func VerifyConnection(v PeerVerifier, usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultVerifyTimeout)
		defer cancel()
		req := &VerifyRequest{Certificates: cs.PeerCertificates, Usage: usage}
		if usage == x509.ExtKeyUsageServerAuth {
			req.ServerName = cs.ServerName
		}
		return v.VerifyPeer(ctx, req)
	}
}
