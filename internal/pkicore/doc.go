// Package pkicore holds the few names every kvmpki package must agree on:
// the sentinel errors for certificate conditions and the key algorithm
// type. The public packages re-export these exact values (provider,
// keystore, libvirttls, migration, rfb), so errors.Is(err,
// provider.ErrRevoked) holds for a revocation found by any of them.
//
// It imports only the standard library, so package provider may import it.
package pkicore
