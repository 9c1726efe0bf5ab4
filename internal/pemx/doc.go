// Package pemx parses the PEM files a KVM host's PKI is made of, with one
// rule per kind of file, shared by every kvmpki package:
//
//   - certificate files hold CERTIFICATE blocks only, at most
//     [MaxCertificates] of them, and at least one ([ParseCertificates]);
//   - private key files yield a [crypto.Signer] from the first PKCS #8
//     "PRIVATE KEY", SEC 1 "EC PRIVATE KEY" or PKCS #1 "RSA PRIVATE KEY"
//     block; an encrypted key ("ENCRYPTED PRIVATE KEY", or a legacy
//     block with a DEK-Info header) is refused with [ErrEncryptedKey],
//     since libvirt and QEMU read keys unencrypted ([ParsePrivateKey]);
//   - CRL files are PEM holding only "X509 CRL" blocks (at most
//     [MaxCRLs]), or one DER CRL ([ParseCRLs]). A CRL file is installed
//     world-readable as it is, so a block of any other type (a key
//     pasted by mistake) is refused rather than skipped.
//
// Errors name PEM block types and positions, never block contents. Their
// messages carry no package prefix: the public package that wraps one
// names itself and the file.
package pemx
