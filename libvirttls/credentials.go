package libvirttls

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
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
// [ErrCredentialsMissing] when one of the first three is missing.
func LoadCredentials(dir string) (*Credentials, error) {
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

// readBounded reads a PKI file of at most 1 MiB.
func readBounded(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxPEMSize+1))
	if err != nil {
		return nil, fmt.Errorf("libvirttls: reading %s: %w", path, err)
	}
	if len(b) > maxPEMSize {
		return nil, fmt.Errorf("%w: %s exceeds %d bytes", ErrCredentialsInvalid, path, maxPEMSize)
	}
	return b, nil
}

// ParsedCredentials are [Credentials] after [Credentials.Verify].
type ParsedCredentials struct {
	Leaf  *x509.Certificate   // the host certificate
	Chain []*x509.Certificate // a verified chain, Leaf first
	CAs   []*x509.Certificate // the certificates of CACert
	CRL   *x509.RevocationList
	Key   crypto.Signer
}

// Verify parses c and checks that it can secure a host at time now: the
// key matches the certificate, the certificate chains to CACert for both
// server and client authentication, is in its validity period and is not
// revoked by CRL, whose signature must verify against a CA certificate.
// Go's verifier refuses SHA-1 and MD5 signatures; Verify also refuses RSA
// keys under 2048 bits. The error wraps [ErrCredentialsInvalid],
// [ErrRevoked] or [ErrCredentialsMissing].
func (c *Credentials) Verify(now time.Time) (*ParsedCredentials, error) {
	if c == nil || len(c.CACert) == 0 || len(c.Cert) == 0 || len(c.Key) == 0 {
		return nil, fmt.Errorf("%w: CA certificate, certificate and key are all required", ErrCredentialsMissing)
	}
	cas, err := parseCertsPEM(c.CACert, "CA certificate")
	if err != nil {
		return nil, err
	}
	chain, err := parseCertsPEM(c.Cert, "certificate")
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(c.Key)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := key.Public().(equaler); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("%w: the key does not match the certificate", ErrCredentialsInvalid)
	}
	if pub, ok := leaf.PublicKey.(*rsa.PublicKey); ok && pub.N.BitLen() < 2048 {
		return nil, fmt.Errorf("%w: RSA key of %d bits, need at least 2048", ErrCredentialsInvalid, pub.N.BitLen())
	}
	roots := x509.NewCertPool()
	inter := x509.NewCertPool()
	for _, ca := range cas {
		if !ca.IsCA {
			return nil, fmt.Errorf("%w: CA file holds a non-CA certificate (%s)", ErrCredentialsInvalid, ca.Subject)
		}
		if bytes.Equal(ca.RawIssuer, ca.RawSubject) {
			roots.AddCert(ca)
		} else {
			inter.AddCert(ca)
		}
	}
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	p := &ParsedCredentials{Leaf: leaf, CAs: cas, Key: key}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCredentialsInvalid, err)
		}
		p.Chain = chains[0]
	}
	if len(c.CRL) > 0 {
		crl, err := ParseCRL(c.CRL, cas)
		if err != nil {
			return nil, err
		}
		p.CRL = crl
		if isRevoked(crl, leaf) {
			return nil, fmt.Errorf("%w: certificate serial %x is on the CRL", ErrRevoked, leaf.SerialNumber)
		}
	}
	return p, nil
}

// ParseCRL parses a PEM or DER CRL and checks its signature against one
// of cas.
func ParseCRL(data []byte, cas []*x509.Certificate) (*x509.RevocationList, error) {
	if err := onlyCRLBlocks(data); err != nil {
		return nil, err
	}
	der := data
	if b, _ := pem.Decode(data); b != nil {
		der = b.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: CRL: %w", ErrCredentialsInvalid, err)
	}
	for _, ca := range cas {
		if crl.CheckSignatureFrom(ca) == nil {
			return crl, nil
		}
	}
	return nil, fmt.Errorf("%w: the CRL is not signed by a CA of the CA file", ErrCredentialsInvalid)
}

// onlyCRLBlocks refuses PEM data holding a block other than a CRL: the
// file is installed world-readable as it is, so every block, not only
// the first, must be a CRL (never, say, a key).
func onlyCRLBlocks(data []byte) error {
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		if b.Type != "X509 CRL" {
			return fmt.Errorf("%w: CRL file holds a %q PEM block", ErrCredentialsInvalid, b.Type)
		}
	}
	return nil
}

// isRevoked reports whether cert's serial is on crl and crl is from
// cert's issuer.
func isRevoked(crl *x509.RevocationList, cert *x509.Certificate) bool {
	if !bytes.Equal(crl.RawIssuer, cert.RawIssuer) {
		return false
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return true
		}
	}
	return false
}

// crlPEM returns a CRL as PEM, converting DER.
func crlPEM(crl []byte) []byte {
	if len(crl) == 0 || bytes.Contains(crl, []byte("-----BEGIN")) {
		return crl
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})
}

func parseCertsPEM(data []byte, what string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: %s file holds a %q PEM block", ErrCredentialsInvalid, what, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCredentialsInvalid, what, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: %s file holds no PEM certificate", ErrCredentialsInvalid, what)
	}
	return certs, nil
}

// parseKeyPEM parses the first private key block; errors name the block
// type only, never key material.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%w: key file holds no PEM private key", ErrCredentialsInvalid)
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			if _, encrypted := b.Headers["DEK-Info"]; encrypted {
				return nil, fmt.Errorf("%w: encrypted RSA PRIVATE KEY; libvirt needs an unencrypted key", ErrCredentialsInvalid)
			}
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w: ENCRYPTED PRIVATE KEY; libvirt needs an unencrypted key", ErrCredentialsInvalid)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: parsing %s block failed", ErrCredentialsInvalid, b.Type)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %s block holds an unsupported key type", ErrCredentialsInvalid, b.Type)
		}
		return s, nil
	}
}

// Sentinel errors for credentials and host state.
var (
	// ErrCredentialsMissing: a required certificate, key or CA file is
	// absent.
	ErrCredentialsMissing = errors.New("libvirttls: credentials missing")
	// ErrCredentialsInvalid: credentials do not parse, do not match, do
	// not verify or are expired.
	ErrCredentialsInvalid = errors.New("libvirttls: credentials invalid")
	// ErrRevoked: a certificate is on the installed CRL.
	ErrRevoked = errors.New("libvirttls: certificate revoked")
)
