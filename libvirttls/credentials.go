package libvirttls

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kvmpki/kvmpki/internal/libvirtdial"
	"github.com/kvmpki/kvmpki/internal/pemx"
	"github.com/kvmpki/kvmpki/internal/pkicore"
	"github.com/kvmpki/kvmpki/internal/revocation"
)

// Credentials are a host's certificate, key, CA and optional CRL, as PEM
// bytes: CloudStack's agent keeps them as cloud.ca.crt, cloud.crt and
// cloud.key. One host certificate with serverAuth and clientAuth serves
// libvirtd, the libvirt client, QEMU's VNC server and both ends of a
// migration.
type Credentials struct {
	// CACert holds the CA certificates (PEM "CERTIFICATE" blocks): the
	// issuing CA and, for an intermediate, the chain up to the root.
	CACert []byte
	// Cert is the host certificate (PEM), leaf first.
	Cert []byte
	// Key is the unencrypted private key of Cert: PEM "PRIVATE KEY",
	// "EC PRIVATE KEY" or "RSA PRIVATE KEY".
	Key []byte
	// CRL is an optional revocation list of the CA, PEM ("X509 CRL") or
	// DER. It is installed where libvirtd and QEMU read it.
	CRL []byte
}

// LoadCredentials reads cloud.ca.crt, cloud.crt, cloud.key and, when
// present, cloud.crl from dir. It returns an error wrapping
// [ErrCredentialsMissing] when one of the first three is missing, and
// ctx.Err() when ctx is done before the files are read.
func LoadCredentials(ctx context.Context, dir string) (*Credentials, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &Credentials{}
	for _, f := range []struct {
		name     string
		dst      *[]byte
		optional bool
	}{
		{AgentCACert, &c.CACert, false},
		{AgentCert, &c.Cert, false},
		{AgentKey, &c.Key, false},
		{AgentCRL, &c.CRL, true},
	} {
		b, err := readBounded(filepath.Join(dir, f.name))
		if errors.Is(err, os.ErrNotExist) {
			if f.optional {
				continue
			}
			return nil, fmt.Errorf("%w: %s", ErrCredentialsMissing, filepath.Join(dir, f.name))
		}
		if err != nil {
			return nil, err
		}
		*f.dst = b
	}
	return c, nil
}

// readBounded reads a PKI file of at most 1 MiB (pemx.ReadFile).
func readBounded(path string) ([]byte, error) {
	b, err := pemx.ReadFile(path)
	if errors.Is(err, pemx.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrCredentialsInvalid, err)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("libvirttls: %w", err)
	}
	return b, err
}

// ParsedCredentials are [Credentials] after [Credentials.Verify].
type ParsedCredentials struct {
	Leaf  *x509.Certificate   // the host certificate
	Chain []*x509.Certificate // a verified chain, Leaf first
	CAs   []*x509.Certificate // the certificates of CACert
	// CRLs are the CRLs of the CRL file, each verified against a CA of
	// CAs and current.
	CRLs []*x509.RevocationList
	Key  crypto.Signer

	revoked *revocation.Set // CRLs, as checked
}

// Verify parses c and checks that it can secure a host at time now: the
// key matches the certificate, the certificate chains to CACert for both
// server and client authentication and is in its validity period, the
// CRLs verify against a CA certificate and are current, and no
// certificate of the chain is on its issuer's CRL (see
// internal/revocation: the issuer by key, not by name; an entry counts
// from its revocation time). Go's verifier refuses SHA-1 and MD5
// signatures; Verify also refuses RSA keys under 2048 bits. The error
// wraps [ErrCredentialsInvalid] (and, for a certificate, [ErrExpired] or
// [ErrUnknownAuthority]), [ErrRevoked] or [ErrCredentialsMissing].
func (c *Credentials) Verify(now time.Time) (*ParsedCredentials, error) {
	if c == nil || len(c.CACert) == 0 || len(c.Cert) == 0 || len(c.Key) == 0 {
		return nil, fmt.Errorf("%w: CA certificate, certificate and key are all required", ErrCredentialsMissing)
	}
	cas, err := parseCertsPEM(c.CACert, "CA certificate")
	if err != nil {
		return nil, err
	}
	chain, key, err := pemx.ParseKeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCredentialsInvalid, err)
	}
	leaf := chain[0]
	if pub, ok := leaf.PublicKey.(*rsa.PublicKey); ok && pub.N.BitLen() < 2048 {
		return nil, fmt.Errorf("%w: RSA key of %d bits, need at least 2048", ErrCredentialsInvalid, pub.N.BitLen())
	}
	for _, ca := range cas {
		if !ca.IsCA {
			return nil, fmt.Errorf("%w: CA file holds a non-CA certificate (%s)", ErrCredentialsInvalid, ca.Subject)
		}
	}
	roots, cainter := libvirtdial.SplitCAs(cas)
	inter := x509.NewCertPool()
	for _, ic := range append(cainter, chain[1:]...) {
		inter.AddCert(ic)
	}
	revoked, err := revocation.Parse(c.CRL, cas, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCredentialsInvalid, err)
	}
	p := &ParsedCredentials{Leaf: leaf, CAs: cas, CRLs: revoked.CRLs(), Key: key, revoked: revoked}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		chains, err := revocation.Verify(leaf, x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}, revoked)
		if errors.Is(err, ErrRevoked) {
			return nil, fmt.Errorf("libvirttls: %w", err)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCredentialsInvalid, err)
		}
		p.Chain = chains[0]
	}
	return p, nil
}

// onlyCRLBlocks refuses PEM data holding a block other than a CRL: the
// file is installed world-readable as it is (see pemx.CheckCRLBlocks).
func onlyCRLBlocks(data []byte) error {
	if err := pemx.CheckCRLBlocks(data); err != nil {
		return fmt.Errorf("%w: %w", ErrCredentialsInvalid, err)
	}
	return nil
}

// crlPEM returns a CRL file as PEM, converting DER.
func crlPEM(crl []byte) []byte { return pemx.CRLPEM(crl) }

// parseCertsPEM parses a file of CERTIFICATE blocks (pemx.ParseCertificates).
func parseCertsPEM(data []byte, what string) ([]*x509.Certificate, error) {
	certs, err := pemx.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s file: %w", ErrCredentialsInvalid, what, err)
	}
	return certs, nil
}

// Sentinel errors for credentials and host state.
var (
	// ErrCredentialsMissing: a required certificate, key or CA file is
	// absent.
	ErrCredentialsMissing = errors.New("libvirttls: credentials missing")
	// ErrCredentialsInvalid: credentials do not parse, do not match, do
	// not verify or are expired.
	ErrCredentialsInvalid = errors.New("libvirttls: credentials invalid")
	// ErrRevoked: a certificate of the chain is on the installed CRL. It
	// is the same value as provider.ErrRevoked.
	ErrRevoked = pkicore.ErrRevoked
	// ErrExpired: a certificate is expired or not yet valid (wrapped with
	// ErrCredentialsInvalid). It is the same value as provider.ErrExpired.
	ErrExpired = pkicore.ErrExpired
	// ErrUnknownAuthority: a certificate does not chain to the CA file
	// (wrapped with ErrCredentialsInvalid). It is the same value as
	// provider.ErrUnknownAuthority.
	ErrUnknownAuthority = pkicore.ErrUnknownAuthority
)
