package keystore

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"time"

	"github.com/kvmpki/kvmpki/internal/pemx"
)

// CheckSecuredOptions tunes CheckSecured. The zero value (or nil) is the safe
// default.
type CheckSecuredOptions struct {
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
// ErrExpired, a *ChainError (which wraps ErrUnknownAuthority or
// ErrExpired), or a keystore error such as ErrIncorrectPassword.
func CheckSecured(ctx context.Context, dir string, opts *CheckSecuredOptions) (*Credentials, error) {
	if opts == nil {
		opts = &CheckSecuredOptions{}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
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
	key, err := pemx.ParsePrivateKey(keyPEM)
	clear(keyPEM)
	if err != nil {
		return fail(KeyFile, fmt.Errorf("keystore: %w", err))
	}
	leaf := certs[0]
	if err := matchKey(leaf, key.Public()); err != nil {
		return fail(KeyFile, err)
	}
	notAfter := leaf.NotAfter
	expired := func(c *x509.Certificate) error {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return fmt.Errorf("keystore: %w: %q valid from %s to %s", ErrExpired, c.Subject.String(),
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

	password, err := readPassphrase(ctx, propsPath)
	if err != nil {
		return fail(filepath.Base(propsPath), err)
	}
	defer clear(password)
	ks, err := Load(ctx, filepath.Join(dir, KeystoreFile), password)
	if err != nil {
		return fail(KeystoreFile, err)
	}
	defer ks.Close()
	ksKey, ksChain, err := ks.PrivateKey(KeyAlias)
	if err != nil {
		return fail(KeystoreFile, err)
	}
	if !bytes.Equal(ksChain[0].Raw, leaf.Raw) {
		return fail(KeystoreFile, fmt.Errorf("keystore: %w: entry %q holds another certificate than %s", ErrKeyMismatch, KeyAlias, CertFile))
	}
	// The Java agent signs with the keystore's key, not cloud.key.
	if err := matchKey(leaf, ksKey.Public()); err != nil {
		return fail(KeystoreFile, fmt.Errorf("%w (the key of entry %q)", err, KeyAlias))
	}
	return &Credentials{Chain: chain, NotAfter: notAfter}, nil
}
