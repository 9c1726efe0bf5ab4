// Package acme is a [provider.Provider] over an ACME (RFC 8555) CA such as
// Let's Encrypt, written against package provider's public API only, as a
// third-party plugin author writes one. A platform registers it with
// [Factory] in its [provider.Registry]; command acmeplugin, one directory
// up, shows that.
//
// The provider's rules, where an ACME CA differs from kvmpki's built-in
// rootca:
//
//   - Names: the CA certifies exactly the CSR's names, so a request with
//     a CSR must list exactly the CSR's names; a request without one gets
//     a CSR for its names.
//   - Role and validity: the CA's profile fixes both (Config.Role); a
//     request for another role or for a validity is refused with
//     provider.Unsupported. IssueRequest.MaxValidity, which package ca
//     sends, is met when the CA's own validity fits; a certificate that
//     ends later is revoked and the request refused with
//     provider.Unsupported.
//   - Renewal: a new order on a CSR; without a CSR provider.Unsupported
//     (the CA certifies a key only on a CSR signed with it).
//   - Several issuing CAs: Config.CACertificates lists every issuing
//     intermediate (Let's Encrypt's R10, R11, ...); IssueResult.Chain is
//     the path of each certificate.
//   - Revocation: by certificate, not by serial alone (provider.Unsupported).
//   - Rate limits and an unavailable CA match provider.ErrRetryLater,
//     with the CA's Retry-After in *provider.RetryLaterError.
//   - CRLs: Pebble 2.4 publishes none and ACME has no request for them,
//     so the provider is neither a provider.CRLSigner nor a
//     provider.CRLSource.
//
// BUG(acme): VerifyPeer knows only the revocations made through the
// same Provider value, and a revocation of a certificate another process
// revoked already succeeds (golang.org/x/crypto/acme reports the CA's
// alreadyRevoked as success): ACME gives no revocation status, and Pebble
// 2.4 publishes no CRL to read it from.
//
// BUG(acme): Pebble 2.4 refuses an order with both an IPv4 and an
// IPv6 address ("CSR is missing Order IP").
package acme
