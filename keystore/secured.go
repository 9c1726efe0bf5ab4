package keystore

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// ErrExpired means a certificate of the host's credentials has expired or
// is not valid yet.
var ErrExpired = errors.New("keystore: certificate expired or not yet valid")

// CheckOptions tunes CheckSecured. The zero value (or nil) is the safe
// default.
type CheckOptions struct {
	// PropertiesFile is the agent.properties holding the keystore
	// passphrase. If empty, it is PropertiesFile in the directory.
	PropertiesFile string
	// Time returns the time at which the credentials must be valid; nil
	// means time.Now.
	Time func() time.Time
}

// Credentials are a host's verified credentials.
type Credentials struct {
	// Chain is the verified chain of cloud.crt, leaf first.
	Chain []*x509.Certificate
	// NotAfter is the earliest expiry along the chain.
	NotAfter time.Time
}

// CheckSecured tells whether the credentials in dir are complete and
// valid now: cloud.crt, cloud.key, cloud.ca.crt and the keystore are
// present and readable, the key matches the certificate, the chain
// verifies to the CA bundle and nothing has expired, and the keystore's
// "cloud" entry holds the same key and certificate. CloudStack only checked
// that cloud.crt exists.
//
// When the host is not secured the error is a *NotSecuredError naming the
// file at fault and wrapping the reason: fs.ErrNotExist, ErrKeyMismatch,
// ErrExpired, a *ChainError, or a keystore error such as
// ErrIncorrectPassword.
func CheckSecured(dir string, opts *CheckOptions) (*Credentials, error) {
	if opts == nil {
		opts = &CheckOptions{}
	}
	now := time.Now()
	if opts.Time != nil {
		now = opts.Time()
	}
	propsPath := opts.PropertiesFile
	if propsPath == "" {
		propsPath = filepath.Join(dir, PropertiesFile)
	}
	fail := func(file string, err error) (*Credentials, error) {
		return nil, &NotSecuredError{File: file, Err: err}
	}
	read := func(name string) ([]byte, error) {
		return readFileLimited(filepath.Join(dir, name), maxPEMSize)
	}
	certPEM, err := read(CertFile)
	if err != nil {
		return fail(CertFile, err)
	}
	certs, err := parsePEMCertificates(certPEM, CertFile)
	if err != nil {
		return fail(CertFile, err)
	}
	caPEM, err := read(CACertFile)
	if err != nil {
		return fail(CACertFile, err)
	}
	cas, err := parsePEMCertificates(caPEM, CACertFile)
	if err != nil {
		return fail(CACertFile, err)
	}
	keyPEM, err := read(KeyFile)
	if err != nil {
		return fail(KeyFile, err)
	}
	key, err := parsePEMKey(keyPEM)
	clear(keyPEM)
	if err != nil {
		return fail(KeyFile, err)
	}
	leaf := certs[0]
	if err := matchKey(leaf, key.Public()); err != nil {
		return fail(KeyFile, err)
	}
	notAfter := leaf.NotAfter
	expired := func(c *x509.Certificate) error {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return fmt.Errorf("%w: %q valid from %s to %s", ErrExpired, c.Subject.String(),
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
		return nil
	}
	for _, c := range certs {
		if err := expired(c); err != nil {
			return fail(CertFile, err)
		}
	}
	chain, err := verifyChain(leaf, certs[1:], cas, now)
	if err != nil {
		// Only a CA that issued one of the certificates can be the
		// reason: a bundle may also hold an expired CA from before a
		// rollover, which Import accepts and which does not matter.
		for _, ca := range cas {
			for _, c := range certs {
				if bytes.Equal(c.RawIssuer, ca.RawSubject) {
					if eerr := expired(ca); eerr != nil {
						return fail(CertFile, eerr)
					}
				}
			}
		}
		return fail(CertFile, err)
	}
	for _, c := range chain {
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}

	password, err := readPassphrase(propsPath)
	if err != nil {
		return fail(filepath.Base(propsPath), err)
	}
	defer clear(password)
	ks, err := Load(filepath.Join(dir, KeystoreFile), password)
	if err != nil {
		return fail(KeystoreFile, err)
	}
	defer ks.Close()
	ksKey, ksChain, err := ks.PrivateKey(KeyAlias)
	if err != nil {
		return fail(KeystoreFile, err)
	}
	if !bytes.Equal(ksChain[0].Raw, leaf.Raw) {
		return fail(KeystoreFile, fmt.Errorf("%w: entry %q holds another certificate than %s", ErrKeyMismatch, KeyAlias, CertFile))
	}
	// The Java agent signs with the keystore's key, not cloud.key.
	if err := matchKey(leaf, ksKey.Public()); err != nil {
		return fail(KeystoreFile, fmt.Errorf("%w (the key of entry %q)", err, KeyAlias))
	}
	return &Credentials{Chain: chain, NotAfter: notAfter}, nil
}

// parsePEMKey reads the first private key block of data: PKCS #8, SEC 1 or
// PKCS #1.
func parsePEMKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("keystore: no PEM private key")
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		clear(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("keystore: parsing %s block: %w", b.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, k)
		}
		return s, nil
	}
}
