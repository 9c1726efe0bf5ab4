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
// The contract is deliberately small: [Provider] holds what every CA can do.
// Further capabilities are separate interfaces ([CRLSigner], [PeerVerifier],
// [Renewer], [Inventory]) that callers reach through the package functions
// [SignCRL], [VerifyPeer], [Renew], [LookupCertificate] and
// [ListCertificates]. Each of them returns an error wrapping
// [errors.ErrUnsupported] when the provider lacks the capability, as
// CloudStack's CA framework answers "not supported" for plugin-specific
// calls.
//
// Requests and results are structs so that the contract can grow without
// breaking implementers.
//
// # Choosing a provider
//
// The platform owns a [Registry]: it registers a [Factory] per provider
// name, lists them (CloudStack's listCAProviders) and opens the configured
// one (CloudStack's ca.framework.provider.plugin setting). Nothing
// registers itself in an init function.
//
// # Verifying peers at TLS handshakes
//
// [VerifyConnection] turns a [PeerVerifier] into a
// [crypto/tls.Config.VerifyConnection] hook. That hook runs on every
// handshake, resumed sessions included, so a revoked certificate is refused
// even when a client resumes a session it opened before the revocation.
//
// # Errors
//
// Conditions a caller branches on are sentinels ([ErrRevoked], [ErrExpired],
// [ErrUnknownAuthority], [ErrNotFound], ...); data travels in typed errors
// ([*RequestError], [*VerifyError], [*RevokedError]) that unwrap to them.
//
// This package imports only the standard library.
package provider
