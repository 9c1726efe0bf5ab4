package rootca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// Options configures a CA. The zero value is a safe default: an ECDSA P-256
// root created at first start, strict client authentication, expired
// certificates refused. Only a key source must be given: Password, or
// Signer for a key held in an HSM or KMS.
//
// # CloudStack settings
//
// The settings of CloudStack's CA framework and root plugin map onto the
// fields like this:
//
//	ca.framework.cert.keysize              LeafKeySize (CloudStack's CA is twice it; here KeySize)
//	ca.framework.cert.signature.algorithm  SignatureAlgorithm
//	ca.framework.cert.validity.period      DefaultValidity (days there, a Duration here)
//	ca.plugin.root.issuer.dn               Subject (see ParseDN)
//	ca.plugin.root.private.key etc.        Store, with the key encrypted under Password
//	ca.plugin.root.auth.strictness         InsecureAllowMissingClientCert = !strictness
//	ca.plugin.root.allow.expired.cert      InsecureAllowExpired
//
// Options must not be modified after it is passed to Open.
type Options struct {
	// Name is the provider name. If empty, DefaultName ("root").
	Name string

	// KeyAlgorithm and KeySize choose the key of a CA created at first
	// start. Zero values mean DefaultCAKeyAlgorithm with
	// DefaultCAKeySize, or DefaultRSACAKeySize for RSA.
	KeyAlgorithm provider.KeyAlgorithm
	KeySize      int

	// SignatureAlgorithm is the algorithm the CA signs with. Zero means
	// SHA-256 with the CA key's algorithm (ECDSA with SHA-384 for P-384).
	// SHA-1 and MD5 are refused.
	SignatureAlgorithm x509.SignatureAlgorithm

	// Subject is the issuer DN of a CA created at first start. If empty,
	// DefaultSubject.
	Subject pkix.Name

	// CAValidity is the validity of a CA created at first start. Zero
	// means DefaultCAValidity.
	CAValidity time.Duration

	// Parent, if set, makes the CA created at first start an intermediate
	// signed by Parent, so the root can stay offline. Parent is used once,
	// at creation, and never stored.
	Parent *Issuer

	// Signer, if set, is the CA's private key held outside the store (an
	// HSM or KMS key). At first start the CA certificate is made for it;
	// later it must match the stored certificate.
	Signer crypto.Signer

	// Password returns the password that encrypts the CA key in the store
	// (PKCS #8, PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC). It is
	// called once per Open, and required unless Signer is set.
	Password func() ([]byte, error)

	// LeafKeyAlgorithm and LeafKeySize choose the key generated for a
	// request without a CSR that names none. Zero values mean
	// DefaultLeafKeyAlgorithm and DefaultLeafKeySize.
	LeafKeyAlgorithm provider.KeyAlgorithm
	LeafKeySize      int

	// DefaultValidity is the leaf validity when a request names none. Zero
	// means DefaultValidity.
	DefaultValidity time.Duration

	// MaxValidity caps the validity a request may ask for; longer requests
	// are refused. Zero means DefaultMaxValidity.
	MaxValidity time.Duration

	// Backdate moves NotBefore into the past to absorb clock skew. Zero
	// means DefaultBackdate; a negative value means none.
	Backdate time.Duration

	// MaxNames bounds the names of one certificate. Zero means
	// DefaultMaxNames.
	MaxNames int

	// InsecureAllowCSRNames puts into certificates the names a CSR asks
	// for even when the request does not vouch for them, as CloudStack
	// does. A host can then obtain a certificate for any name outside
	// ReservedDNSNames, another host's included. Without it, CSR names the
	// request does not list are left out.
	InsecureAllowCSRNames bool

	// ReservedDNSNames are names that only the platform may put into a
	// certificate (through IssueRequest.DNSNames): with
	// InsecureAllowCSRNames, a CSR that asks for one is refused. An entry
	// "*.example" reserves every name below example. Reserve the marker
	// that identifies management servers, as CloudStack's
	// ca.framework.cert.management.custom.san, so that a host cannot pose
	// as one.
	ReservedDNSNames []string

	// CRLValidity is the time from a CRL's ThisUpdate to its NextUpdate.
	// Zero means DefaultCRLValidity.
	CRLValidity time.Duration

	// RevocationPollInterval is how often the CA asks a shared store
	// (one implementing RevocationFeed, as MemStore and SQLStore do) for
	// revocations other CAs made in it, so that its handshake checks
	// refuse them too. Zero means DefaultRevocationPollInterval; negative
	// turns the background polling off (Refresh still works). On
	// PostgreSQL the CA waits for the revocation's notification
	// instead, and polls at this interval only as a safety net.
	// SignCRL always asks the store first, so a CRL holds every
	// revocation committed before it is signed.
	RevocationPollInterval time.Duration

	// InsecureAllowMissingClientCert admits TLS clients that present no
	// certificate (CloudStack's ca.plugin.root.auth.strictness=false).
	// Clients that do present one are still verified in full, and refused
	// when it fails.
	InsecureAllowMissingClientCert bool

	// InsecureAllowExpired accepts expired and not-yet-valid peer
	// certificates (CloudStack's ca.plugin.root.allow.expired.cert=true,
	// its default). Chain, key usage and revocation are still checked.
	InsecureAllowExpired bool

	// Time returns the current time. If nil, time.Now.
	Time func() time.Time

	// Rand is the source of randomness for keys and serials. If nil,
	// crypto/rand.Reader.
	Rand io.Reader

	// Logger receives one record per issuance and revocation. If nil,
	// nothing is logged. Keys and passwords are never logged.
	Logger *slog.Logger
}

// Issuer is a CA certificate with its key, used to sign an intermediate.
type Issuer struct {
	// Certificate is the issuing certificate.
	Certificate *x509.Certificate
	// Chain holds Certificate's issuers up to the root; empty when
	// Certificate is a self-signed root.
	Chain []*x509.Certificate
	// Signer is Certificate's private key.
	Signer crypto.Signer
}

func (o *Options) now() time.Time {
	if o.Time != nil {
		return o.Time()
	}
	return time.Now()
}

func (o *Options) rand() io.Reader {
	if o.Rand != nil {
		return o.Rand
	}
	return rand.Reader
}

func (o *Options) name() string {
	if o.Name != "" {
		return o.Name
	}
	return DefaultName
}

func (o *Options) defaultValidity() time.Duration {
	return positiveOr(o.DefaultValidity, DefaultValidity)
}

func (o *Options) maxValidity() time.Duration {
	return positiveOr(o.MaxValidity, DefaultMaxValidity)
}

func (o *Options) backdate() time.Duration {
	switch {
	case o.Backdate < 0:
		return 0
	case o.Backdate == 0:
		return DefaultBackdate
	}
	return o.Backdate
}

func (o *Options) maxNames() int {
	return positiveOr(o.MaxNames, DefaultMaxNames)
}

func (o *Options) crlValidity() time.Duration {
	return positiveOr(o.CRLValidity, DefaultCRLValidity)
}

func (o *Options) revocationPollInterval() time.Duration {
	return positiveOr(o.RevocationPollInterval, DefaultRevocationPollInterval)
}

func (o *Options) caValidity() time.Duration {
	return positiveOr(o.CAValidity, DefaultCAValidity)
}

// positiveOr returns v if it is positive, and def otherwise: the zero value
// of an option means its default.
func positiveOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
