// Package revocation holds kvmpki's one rule for checking certificates
// against CRLs (RFC 5280, section 6.3), the strictest of the copies it
// replaces:
//
//   - a CRL counts only once its signature verifies against one of the
//     CA certificates it is loaded with, and only while it is current
//     (thisUpdate not in the future, nextUpdate, when set, not past):
//     [NewSet] refuses any other;
//   - every non-root certificate of a verified chain is checked, not only
//     the leaf, against the CRLs of its actual issuer in that chain:
//     the CA whose key signed the CRL and whose name is the CRL's issuer,
//     so a CRL from another CA with the same name is not honoured;
//   - an entry counts from its revocation time: an entry dated in the
//     future does not revoke yet.
//
// For the common case call [Verify], which verifies a chain with
// crypto/x509, maps its errors onto the internal/pkicore sentinels and
// then checks revocation on every chain found.
package revocation
