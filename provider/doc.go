// Package provider defines the contract between a KVM management platform
// and a certificate authority (CA) provider, and a registry of named
// providers.
//
// A provider issues X.509 certificates (RFC 5280) for the hosts, console
// proxies and management servers of a KVM cloud, revokes them and publishes
// the CA certificates that peers trust. The built-in provider is package
// rootca; third parties can plug in others (an ACME one, a Vault one) by
// implementing [Provider] and proving it with package
// provider/providertest.
//
// The contract is deliberately small: [Provider] holds what every CA can do
// (name, CA certificates, issue, revoke, close). Further capabilities are
// separate interfaces ([CRLSigner], [CRLSource], [PeerVerifier],
// [Renewer], [Inventory]) that callers reach through the package functions
// [SignCRL], [CRLs], [VerifyPeer], [Renew], [LookupCertificate] and
// [ListCertificates]. Each of them returns an error wrapping
// [errors.ErrUnsupported] when the provider lacks the capability, as
// CloudStack's CA framework answers "not supported" for plugin-specific
// calls. A CA that signs its own CRLs (rootca) is a [CRLSigner]; one whose
// CA publishes them (ACME, Vault) is a [CRLSource]; [CRLs] takes either.
//
// Requests and results are structs so that the contract can grow without
// breaking implementers. [IssueResult.TLSCertificate],
// [IssueResult.ChainPEM] and [IssueResult.KeyPEM] turn a result into a TLS
// identity or the files libvirt and QEMU read, with the intermediate CAs
// included; the bundle peers trust is [CABundle].
//
// # Choosing a provider
//
// The platform owns a [Registry]: it registers a [Factory] per provider
// name, lists them (CloudStack's listCAProviders) and opens the configured
// one (CloudStack's ca.framework.provider.plugin setting). Nothing
// registers itself in an init function. Open the provider once per
// process, share it, and Close it at exit; [Registry.Open] checks that the
// provider answers to the name it was registered under.
//
// # Writing a provider
//
// The policy every CA needs is exported, so that a provider does not
// write it again: [CheckIssueRequest] (role, names, validity: an IP
// literal such as "10.0.0.9" is refused as a DNS name, since Go and GnuTLS
// disagree on matching it) and [CheckCSR] (signature algorithm, key
// strength, signature, CA:TRUE, names), both configured by a [CSRPolicy]
// whose zero value is the strict default; [VerifyChain] verifies a peer's
// chain and maps crypto/x509 errors onto the sentinels below. Package
// provider/providertest checks a provider against the contract.
//
// # Verifying peers at TLS handshakes
//
// [VerifyClientConnection] and [VerifyServerConnection] turn a
// [PeerVerifier] into [crypto/tls.Config.VerifyConnection] hooks, on a
// server and on a client. The hooks run on every handshake, resumed
// sessions included, so a revoked certificate is refused even when a
// client resumes a session it opened before the revocation. A server check
// always names the host or address that was dialled: crypto/tls sends no
// SNI for an IP address, and a check without a name would accept any
// host's server certificate. Likewise a [VerifyRequest] must name its
// [Usage]: the zero value is refused rather than read as "any usage".
//
// # Errors
//
// Conditions a caller branches on are sentinels ([ErrRevoked], [ErrExpired],
// [ErrUnknownAuthority], [ErrNotFound], [ErrRetryLater], ...); data travels
// in typed errors ([*RequestError], [*VerifyError], [*RevokedError],
// [*RetryLaterError]) that unwrap to them. A refused request matches
// [ErrInvalidRequest]; a field or value the provider does not support
// ([Unsupported]) matches [errors.ErrUnsupported] as well; a CA that is
// rate-limiting or not ready matches [ErrRetryLater].
//
// This package imports only the standard library and kvmpki's
// internal/pkicore, whose sentinels it re-exports.
package provider
