// Package keystore is the agent side of a kvmpki CA: everything a KVM host
// (or any Java or Go agent) does with its own credentials, without shelling
// out to keytool, openssl or sed.
//
// It replaces Apache CloudStack's keystore-setup and keystore-cert-import
// scripts and keeps their on-disk layout, so the CloudStack agent and
// libvirt/QEMU read what it writes:
//
//	DIR/cloud.jks      keystore (JKS or PKCS #12 content), key entry "cloud",
//	                   trusted CA entries "cloudca.1", "cloudca.2", ...
//	DIR/cloud.csr      PKCS #10 request (PEM) made by Setup
//	DIR/cloud.crt      issued certificate and its intermediates (PEM)
//	DIR/cloud.key      the private key, PKCS #8 PEM, mode 0600
//	DIR/cloud.ca.crt   the CA bundle (PEM)
//	agent.properties   keystore.passphrase=..., every other line untouched
//
// For the common case, run Setup, send the CSR to the CA, and Import what
// the CA returns:
//
//	res, err := keystore.Setup(ctx, "/etc/cloudstack/agent", nil)
//	// ... the management server issues a certificate for res.CSR ...
//	_, err = keystore.Import(ctx, "/etc/cloudstack/agent", certPEM, caPEM, nil)
//	creds, err := keystore.CheckSecured(ctx, "/etc/cloudstack/agent", nil) // err says why not
//
// Parse, Load and KeyStore.Marshal read and write keystores directly, and
// convert between the formats keeping aliases, chains and trusted entries.
//
// # Formats
//
// Parse reads JKS (OpenJDK's JavaKeyStore format) and PKCS #12 (RFC 7292),
// choosing by content, never by file name: keytool has written PKCS #12
// into files named .jks since JDK 9. KeyStore.Marshal writes either format.
//
// Each format has one reader and one writer. JKS is written by
// keystore-go (with sorted, lower-case aliases) and read by a bounded
// reader of this package, because keystore-go's reader allocates whatever
// length a file claims. PKCS #12 is read and written by this package, key
// stores and trust stores alike: go-pkcs12's encoders cannot name a key
// entry (Java would call it "1") nor put trusted entries beside it, and
// its decoders read one key at most and lose aliases. Files are written
// with PBES2 (PBKDF2-HMAC-SHA256 from crypto/pbkdf2, AES-256-CBC), an
// HMAC-SHA256 MAC, friendlyName and localKeyId attributes and Java's
// trusted-certificate attribute, which JDK 12 and later read, at 10,000
// iterations as keytool writes them: Setup keeps 2,048 for a passphrase it
// has just generated, whose 130 random bits no stretching can improve.
// Parse reads PBES2 and the legacy pbeWithSHAAnd3-KeyTripleDES-CBC
// encryption; see the BUG notes.
//
// Aliases are lower-cased, as Java's keystores do. PKCS #12 key entries
// without a friendlyName are named "1", "2", ... as Java names them.
//
// # Security
//
// Passwords are []byte, cleared after use as a best effort, never logged,
// never put on a command line, and never part of an error. They must be
// printable ASCII of at least MinPasswordLen characters: Java, keystore-go
// and the PKCS #12 KDFs encode other characters differently. The keystore
// passphrase lives in plain text in agent.properties, because the
// CloudStack agent reads it there; Setup writes that file with mode 0600.
// JKS protects keys with Sun's proprietary SHA-1 keystream, which is weak
// by design; PKCS #12 is the default. PKCS #12 files without a MAC are
// refused, since nothing would protect their trusted certificates.
//
// Import refuses a certificate that does not match the keystore's key or
// does not chain to the CA bundle, and changes nothing then. Every file is
// written to a temporary file in the same directory, synced and renamed,
// and a failed rename puts the old files back; private keys are written
// with mode 0600. CheckSecured checks what CloudStack never did: that the
// files are present, that key and certificate match, that the chain
// verifies and that nothing has expired.
//
// # Limits
//
// Every length read from a keystore is checked against the bytes actually
// present before anything is allocated, keystores over MaxFileSize and
// properties files over MaxPropertiesSize are refused, and entry counts are
// capped at MaxEntries.
//
// The work a PKCS #12 file can ask of Parse is bounded too (ErrWorkLimit
// beyond it): all its key derivations together (MAC, encrypted safes,
// shrouded keys) run at most MaxKDFIterations iterations, and keys derived
// once are reused for every safe or key with the same salt, iteration
// count and function. Certificates repeated in several bags are parsed
// once, each certificate's issuer is looked for once, and building the
// chains takes at most MaxSignatureChecks signature checks.
//
// BUG(keystore): Parse does not read PKCS #12 files encrypted with RC2
// (OpenSSL's pre-3.0 default, JDK 11 and older keytool), JCEKS, or PBMAC1
// MACs; its errors for them wrap errors.ErrUnsupported.
//
// BUG(keystore): Import and Setup replace their files one rename at a
// time. An error they return leaves the previous files in place (a failed
// rename puts back the files already replaced), except a failure to sync
// the directory, which comes after every file is in place, and a
// properties file outside the directory, which Setup writes first. A
// process killed
// between two renames, a window of microseconds after every file has been
// written and synced, can leave new and old files side by side.
//
// BUG(keystore): CheckSecured does not consult a CRL: a revoked but
// otherwise valid certificate counts as secured. Peers check revocation at
// handshakes.
package keystore
