package rootca

import (
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// Defaults, documented on the fields of Options and CreateOptions that
// they fill in. Each one passes every consumer in the project's certificate
// profile reference: libvirt 9.0 with GnuTLS 3.7, QEMU 7.2, Go, OpenSSL 3.0
// and Java 17.
const (
	// defaultName is the provider name, as CloudStack names its built-in
	// plugin.
	defaultName = "root"

	// defaultCAKeyAlgorithm and defaultCAKeySize choose the key of a CA
	// Create makes: ECDSA P-256, which every consumer accepts and
	// which signs about 20 times faster than RSA-3072.
	defaultCAKeyAlgorithm = provider.KeyAlgorithmECDSA
	defaultCAKeySize      = 256
	// defaultRSACAKeySize is the CA key size when KeyAlgorithm is RSA and
	// KeySize is zero. CloudStack's CA is RSA-4096 (twice the leaf size).
	defaultRSACAKeySize = 3072

	// defaultCAValidity is the validity of a CA Create makes.
	// CloudStack's root lives 30 years; a shorter life bounds the damage of
	// a key that leaked unnoticed.
	defaultCAValidity = 10 * 365 * 24 * time.Hour

	// defaultLeafKeyAlgorithm and defaultLeafKeySize choose the key the CA
	// generates for a request without a CSR: RSA-2048, which carries the
	// digitalSignature|keyEncipherment key usage libvirt 9.0 demands and is
	// what CloudStack's agents use.
	defaultLeafKeyAlgorithm = provider.KeyAlgorithmRSA
	defaultLeafKeySize      = 2048

	// defaultValidity is the validity of a leaf certificate when the
	// request does not say (CloudStack's ca.framework.cert.validity.period).
	defaultValidity = 365 * 24 * time.Hour
	// defaultMaxValidity caps the validity a request may ask for.
	// CloudStack has no cap.
	defaultMaxValidity = 3 * 365 * 24 * time.Hour

	// defaultRevocationPollInterval is how often a CA polls a shared
	// store for revocations made by other CAs: a revocation on one
	// management server is refused by the others within this time plus
	// one query.
	defaultRevocationPollInterval = 250 * time.Millisecond

	// defaultBackdate is how far before the issuance time a certificate's
	// NotBefore lies, so that hosts whose clocks lag accept it at once.
	// It never reaches before the CA's own NotBefore.
	defaultBackdate = time.Hour

	// defaultMaxNames bounds the DNS names and IP addresses of one
	// certificate.
	defaultMaxNames = 100

	// defaultCRLValidity is the time between a CRL's ThisUpdate and
	// NextUpdate. GnuTLS refuses connections once a loaded CRL is past its
	// NextUpdate, so publish well before it.
	defaultCRLValidity = 7 * 24 * time.Hour

	// minRSAKeySize and maxRSAKeySize bound RSA keys in CSRs and options.
	// Larger keys are refused because verifying them is a cheap way to burn
	// the CA's CPU.
	minRSAKeySize = 2048
	maxRSAKeySize = 8192

	// maxIssueAttempts bounds retries after a serial collision, which with
	// 159 random bits means a broken random source.
	maxIssueAttempts = 3

	// maxCommonNameLength is ub-common-name from RFC 5280.
	maxCommonNameLength = 64
)

// defaultSubject is the subject of a CA Create makes when
// CreateOptions.Subject is empty. An O attribute keeps zlint quiet.
const defaultSubject = "CN=kvmpki root CA,O=kvmpki"
