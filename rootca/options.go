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

// Options configures a CA, for Open, and for Create through
// CreateOptions. The zero value is a safe default: strict client
// authentication, expired certificates refused. Only a key source must be
// given: Password, or Signer for a key held in an HSM or KMS.
//
// # CloudStack settings
//
// The settings of CloudStack's CA framework and root plugin map onto the
// fields like this:
//
//	ca.framework.cert.keysize              LeafKeySize (CloudStack's CA is twice it; here CreateOptions.KeySize)
//	ca.framework.cert.signature.algorithm  SignatureAlgorithm
//	ca.framework.cert.validity.period      DefaultValidity (days there, a Duration here)
//	ca.plugin.root.issuer.dn               CreateOptions.Subject (see ParseDN)
//	ca.plugin.root.private.key etc.        the Store, with the key encrypted under Password
//	ca.plugin.root.auth.strictness         InsecureAllowMissingClientCert = !strictness
//	ca.plugin.root.allow.expired.cert      InsecureAllowExpired
//
// Options must not be modified after it is passed to Open or Create.
type Options struct {
	// Name is the provider name. If empty, "root", as CloudStack names
	// its built-in plugin.
	Name string

	// SignatureAlgorithm is the algorithm the CA signs with. Zero means
	// SHA-256 with the CA key's algorithm (ECDSA with SHA-384 for P-384,
	// SHA-512 for P-521). SHA-1 and MD5 are refused.
	SignatureAlgorithm x509.SignatureAlgorithm

	// Signer, if set, is the CA's private key held outside the store (an
	// HSM or KMS key). Create makes the CA certificate for it; Open
	// checks that it matches the stored certificate.
	Signer crypto.Signer

	// Password returns the password that encrypts the CA key in the store
	// (PKCS #8, PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC). It is
	// called once per Open or Create, once more per CA generation the CA
	// loads during a rotation (BeginRotation, or a rotation another CA
	// sharing the store began), and required unless Signer is set.
	// Its buffer is copied, never cleared.
	Password func() ([]byte, error)

	// LeafKeyAlgorithm and LeafKeySize choose the key generated for a
	// request without a CSR that names none. Zero values mean RSA-2048,
	// which carries the digitalSignature|keyEncipherment key usage
	// libvirt 9.0 demands and is what CloudStack's agents use; an ECDSA
	// size of zero means P-256.
	LeafKeyAlgorithm provider.KeyAlgorithm
	LeafKeySize      int

	// DefaultValidity is the leaf validity when a request names none
	// (CloudStack's ca.framework.cert.validity.period). Zero means one
	// year (365 days), cut short at the CA's own NotAfter.
	DefaultValidity time.Duration

	// MaxValidity caps the validity a request may ask for; longer requests
	// are refused. Zero means three years (3 × 365 days). CloudStack has
	// no cap.
	MaxValidity time.Duration

	// Backdate moves NotBefore into the past to absorb clock skew, never
	// before the CA's own NotBefore. Zero means one hour; a negative value
	// means none.
	Backdate time.Duration

	// MaxNames bounds the DNS names and IP addresses of one certificate.
	// Zero means 100.
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
	// as one. Nil reserves none.
	ReservedDNSNames []string

	// CRLValidity is the time from a CRL's ThisUpdate to its NextUpdate.
	// Zero means seven days. GnuTLS refuses connections once a loaded
	// CRL is past its NextUpdate, so publish well before it.
	CRLValidity time.Duration

	// RevocationPollInterval is how often the CA asks a shared store
	// (one implementing RevocationFeed, as MemStore and sqlstore.Store
	// do) for revocations other CAs made in it, so that its handshake
	// checks refuse them too. Zero means 250 ms: a revocation on one
	// management server is refused by the others within that time plus
	// one query. Negative turns the background polling off (Refresh
	// still works). On PostgreSQL the CA waits for the revocation's
	// notification instead, and polls at this interval only as a safety
	// net. SignCRL always asks the store first, so a CRL holds every
	// revocation committed before it is signed. The same poll picks up a
	// CA rotation or retirement another CA made in the store (see
	// BeginRotation).
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

// CreateOptions configures Create: the fields that shape the CA it makes
// and that nothing else uses, and the Options of the CA it returns. The
// zero value, given a key source in Options, makes a self-signed ECDSA
// P-256 root named "CN=kvmpki root CA,O=kvmpki" that lives ten years.
//
// CreateOptions must not be modified after it is passed to Create.
type CreateOptions struct {
	// Options configures the CA Create returns, as for Open. Its
	// Password or Signer is the key source: Create encrypts the key it
	// generates under Password, or certifies Signer.
	Options

	// KeyAlgorithm and KeySize choose the CA key Create generates when
	// Options.Signer is nil. Zero values mean ECDSA P-256, which every
	// consumer accepts and which signs about 20 times faster than
	// RSA-3072; with KeyAlgorithmRSA a zero KeySize means 3072 bits
	// (CloudStack's CA is RSA-4096). RSA keys must have 2048 to 8192
	// bits, curves be P-256, P-384 or P-521.
	KeyAlgorithm provider.KeyAlgorithm
	KeySize      int

	// Subject is the CA's DN (CloudStack's ca.plugin.root.issuer.dn; see
	// ParseDN). If empty, "CN=kvmpki root CA,O=kvmpki" for a root, and
	// "CN=kvmpki intermediate CA,O=kvmpki" with Parent.
	Subject pkix.Name

	// Validity is the CA certificate's validity. Zero means ten years
	// (10 × 365 days): CloudStack's root lives 30 years, and a shorter
	// life bounds the damage of a key that leaked unnoticed. With Parent
	// it ends no later than Parent's certificate.
	Validity time.Duration

	// Parent, if set, makes the CA an intermediate signed by Parent, so
	// that the root can stay offline (NewRoot makes one). Parent is used
	// once and never stored. If nil, the CA is a self-signed root.
	Parent *Issuer
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
	return defaultName
}

func (o *Options) defaultValidity() time.Duration {
	return positiveOr(o.DefaultValidity, defaultValidity)
}

func (o *Options) maxValidity() time.Duration {
	return positiveOr(o.MaxValidity, defaultMaxValidity)
}

func (o *Options) backdate() time.Duration {
	switch {
	case o.Backdate < 0:
		return 0
	case o.Backdate == 0:
		return defaultBackdate
	}
	return o.Backdate
}

func (o *Options) maxNames() int {
	return positiveOr(o.MaxNames, defaultMaxNames)
}

func (o *Options) crlValidity() time.Duration {
	return positiveOr(o.CRLValidity, defaultCRLValidity)
}

func (o *Options) revocationPollInterval() time.Duration {
	return positiveOr(o.RevocationPollInterval, defaultRevocationPollInterval)
}

func (o *CreateOptions) validity() time.Duration {
	return positiveOr(o.Validity, defaultCAValidity)
}

// positiveOr returns v if it is positive, and def otherwise: the zero value
// of an option means its default.
func positiveOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
