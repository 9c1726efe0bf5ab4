package keystore

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kvmpki/kvmpki/internal/pemx"
	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// ImportOptions tunes Import. The zero value (or nil) is the safe default.
type ImportOptions struct {
	// PropertiesFile is the agent.properties holding the keystore
	// passphrase. If empty, it is PropertiesFile in the directory.
	PropertiesFile string
	// Rand is the source of randomness for the keystore's salts; nil
	// means crypto/rand.
	Rand io.Reader
	// Time returns the time at which the chain must be valid; nil means
	// time.Now.
	Time func() time.Time
}

// ImportResult describes what Import installed.
type ImportResult struct {
	// Chain is the verified chain stored with the key: the certificate,
	// then its issuers up to a certificate of the CA bundle.
	Chain []*x509.Certificate
	// CACerts are the CA bundle's certificates, stored as "cloudca.1",
	// "cloudca.2", ... in this order.
	CACerts []*x509.Certificate
}

// Import installs a certificate issued for the CSR of Setup, as
// CloudStack's keystore-cert-import did. certPEM holds the certificate,
// optionally followed by intermediates; caPEM is the CA bundle.
//
// It refuses, changing nothing, a certificate whose public key is not the
// key of the keystore's "cloud" entry (ErrKeyMismatch) or that does not
// verify to the bundle at the current time (*ChainError, which also covers
// expired certificates and SHA-1 signatures). Otherwise it stores the key
// with the verified chain under "cloud", replaces the trusted entries
// "cloudca.N" with the bundle's certificates, and writes cloud.crt,
// cloud.key (PKCS #8, mode 0600) and cloud.ca.crt next to the keystore, all
// written before any is renamed into place.
func Import(ctx context.Context, dir string, certPEM, caPEM []byte, opts *ImportOptions) (*ImportResult, error) {
	return importCert(ctx, dir, certPEM, caPEM, opts, osFS{})
}

func importCert(ctx context.Context, dir string, certPEM, caPEM []byte, opts *ImportOptions, fsys fileSystem) (*ImportResult, error) {
	if opts == nil {
		opts = &ImportOptions{}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now
	if opts.Time != nil {
		now = opts.Time
	}
	propsPath := opts.PropertiesFile
	if propsPath == "" {
		propsPath = filepath.Join(dir, PropertiesFile)
	}
	certs, err := parsePEMCertificates(certPEM, "certificate")
	if err != nil {
		return nil, err
	}
	cas, err := parsePEMCertificates(caPEM, "CA bundle")
	if err != nil {
		return nil, err
	}

	password, err := readPassphrase(ctx, propsPath)
	if err != nil {
		return nil, err
	}
	defer clear(password)
	ks, err := Load(ctx, filepath.Join(dir, KeystoreFile), password)
	if err != nil {
		return nil, err
	}
	defer ks.Close()
	key, _, err := ks.PrivateKey(KeyAlias)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	if err := matchKey(leaf, key.Public()); err != nil {
		return nil, err
	}
	chain, err := verifyChain(leaf, certs[1:], cas, now())
	if err != nil {
		return nil, err
	}

	if err := ks.SetPrivateKey(KeyAlias, key, chain); err != nil {
		return nil, err
	}
	for _, a := range ks.Aliases() {
		if strings.HasPrefix(a, CAAliasPrefix) {
			ks.Delete(a)
		}
	}
	for i, c := range cas {
		if err := ks.SetTrustedCert(CAAliasPrefix+strconv.Itoa(i+1), c); err != nil {
			return nil, err
		}
	}
	ksData, err := ks.marshal(ks.Format(), password, opts.Rand, writeIterations)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ks.entries[KeyAlias].key})
	defer clear(keyPEM)

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := writeFiles(fsys, dir, []fileWrite{
		{name: CACertFile, data: encodeCertificates(cas), mode: 0o644},
		{name: CertFile, data: encodeCertificates(certs), mode: 0o644},
		{name: KeyFile, data: keyPEM, mode: 0o600},
		{name: KeystoreFile, data: ksData, mode: 0o600},
	}); err != nil {
		return nil, err
	}
	return &ImportResult{Chain: chain, CACerts: cas}, nil
}

// readPassphrase returns keystore.passphrase from the properties file.
func readPassphrase(ctx context.Context, path string) ([]byte, error) {
	props, err := LoadProperties(ctx, path)
	if err != nil {
		return nil, err
	}
	defer props.Clear()
	pw, ok := props.Lookup(PassphraseProperty)
	if !ok || len(pw) == 0 {
		return nil, fmt.Errorf("%w (%s)", ErrNoPassphrase, path)
	}
	return pw, nil
}

// verifyChain verifies leaf to the CA bundle at t, with intermediates, and
// returns the first chain found, leaf first.
func verifyChain(leaf *x509.Certificate, intermediates, cas []*x509.Certificate, t time.Time) ([]*x509.Certificate, error) {
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   t,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, &ChainError{Subject: leaf.Subject.String(), Err: pkicore.VerifyReason(err)}
	}
	return chains[0], nil
}

// parsePEMCertificates returns the CERTIFICATE blocks of data, in order.
// Other blocks are refused (pemx's rule): a private key pasted by mistake
// should not be silently dropped (or kept).
func parsePEMCertificates(data []byte, what string) ([]*x509.Certificate, error) {
	if len(data) > maxPEMSize {
		return nil, fmt.Errorf("%w: %s of %d bytes", ErrTooLarge, what, len(data))
	}
	certs, err := pemx.ParseCertificates(data)
	switch {
	case errors.Is(err, pemx.ErrNoBlock):
		return nil, fmt.Errorf("%w in the %s", ErrNoCertificateBlock, what)
	case errors.Is(err, pemx.ErrTooMany):
		return nil, fmt.Errorf("%w: %s: %v", ErrTooLarge, what, err)
	case err != nil:
		return nil, fmt.Errorf("keystore: %s: %w", what, err)
	case len(certs) > MaxChainLen:
		return nil, fmt.Errorf("%w: %s holds more than %d certificates", ErrTooLarge, what, MaxChainLen)
	}
	return certs, nil
}

func encodeCertificates(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
