package keystore

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// KeyStore is an in-memory keystore: private key entries (a key and its
// certificate chain) and trusted certificate entries, by alias. Aliases
// are lower-case, as Java's JKS and PKCS12 types make them. The zero value
// is not usable; use New or Parse.
//
// Keys and certificates are kept as DER and parsed when asked for, so that
// loading and re-storing a keystore costs little more than copying it.
type KeyStore struct {
	format  Format
	entries map[string]*entry
}

// entry is one keystore entry: key is PKCS #8 DER for a private key entry
// and nil for a trusted certificate entry, whose certificate is chain[0].
type entry struct {
	created time.Time
	key     []byte
	chain   [][]byte
}

// EntryType is the kind of a keystore entry.
type EntryType int

const (
	// PrivateKeyEntry holds a private key and its certificate chain.
	PrivateKeyEntry EntryType = iota + 1
	// TrustedCertEntry holds one trusted certificate.
	TrustedCertEntry
)

// String returns keytool's names: "PrivateKeyEntry", "trustedCertEntry".
func (t EntryType) String() string {
	switch t {
	case PrivateKeyEntry:
		return "PrivateKeyEntry"
	case TrustedCertEntry:
		return "trustedCertEntry"
	}
	return "unknown"
}

// New returns an empty keystore that Marshal writes as format by default.
func New(format Format) *KeyStore {
	return &KeyStore{format: format, entries: map[string]*entry{}}
}

// Format returns the format the keystore was parsed from, or given to New.
func (ks *KeyStore) Format() Format { return ks.format }

// Parse reads a JKS or PKCS #12 keystore, whichever the bytes are, and
// checks its integrity with password. Errors wrap ErrUnknownFormat,
// errors.ErrUnsupported, ErrTruncated, ErrMalformed, ErrIncorrectPassword,
// ErrInvalidPassword, ErrTooLarge or ErrWorkLimit.
func Parse(data, password []byte) (*KeyStore, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: keystore of %d bytes, limit %d", ErrTooLarge, len(data), MaxFileSize)
	}
	format, err := DetectFormat(data)
	if err != nil {
		return nil, err
	}
	switch format {
	case FormatJKS:
		return parseJKS(data, password)
	default:
		return parsePKCS12(data, password)
	}
}

// Load reads the keystore at path with Parse.
func Load(ctx context.Context, path string, password []byte) (*KeyStore, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := readFileLimited(path, MaxFileSize)
	if err != nil {
		return nil, err
	}
	return Parse(data, password)
}

// Marshal encodes the keystore as format (FormatUnknown: the format it was
// parsed from, else PKCS #12), protecting the store and every key with
// password. JKS needs a printable ASCII password; both formats need at
// least MinPasswordLen characters. PKCS #12 is written with 10,000 PBKDF2
// and MAC iterations, keytool's default, since the password may be one a
// person chose.
func (ks *KeyStore) Marshal(format Format, password []byte) ([]byte, error) {
	return ks.marshal(format, password, nil, writeIterations)
}

// marshal is Marshal with a source of randomness (nil: crypto/rand) and
// the PKCS #12 iteration count.
func (ks *KeyStore) marshal(format Format, password []byte, rand io.Reader, iterations int) ([]byte, error) {
	if format == FormatUnknown {
		format = ks.format
	}
	if err := checkPassword(password, format); err != nil {
		return nil, err
	}
	switch format {
	case FormatJKS:
		return ks.marshalJKS(password, rand)
	default:
		return ks.marshalPKCS12(password, rand, iterations)
	}
}

// Aliases returns the aliases in sorted order.
func (ks *KeyStore) Aliases() []string {
	aliases := make([]string, 0, len(ks.entries))
	for a := range ks.entries {
		aliases = append(aliases, a)
	}
	slices.Sort(aliases)
	return aliases
}

// EntryType returns the kind of the entry alias, and false if there is none.
func (ks *KeyStore) EntryType(alias string) (EntryType, bool) {
	e, ok := ks.entries[normalizeAlias(alias)]
	if !ok {
		return 0, false
	}
	if e.key != nil {
		return PrivateKeyEntry, true
	}
	return TrustedCertEntry, true
}

// Delete removes the entry alias, if there is one.
func (ks *KeyStore) Delete(alias string) {
	if e, ok := ks.entries[normalizeAlias(alias)]; ok {
		clear(e.key)
		delete(ks.entries, normalizeAlias(alias))
	}
}

// Created returns the creation time of the entry alias.
func (ks *KeyStore) Created(alias string) (time.Time, error) {
	e, err := ks.lookup(alias)
	if err != nil {
		return time.Time{}, err
	}
	return e.created, nil
}

// SetPrivateKey stores key and its certificate chain (leaf first) under
// alias, replacing any entry there. The key must be an RSA, ECDSA or
// Ed25519 key that x509.MarshalPKCS8PrivateKey accepts, and the leaf must
// hold its public key.
func (ks *KeyStore) SetPrivateKey(alias string, key crypto.Signer, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return fmt.Errorf("keystore: key entry %q needs a certificate chain", alias)
	}
	if len(chain) > MaxChainLen {
		return fmt.Errorf("%w: chain of %d certificates, limit %d", ErrTooLarge, len(chain), MaxChainLen)
	}
	if err := matchKey(chain[0], key.Public()); err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
	}
	ders := make([][]byte, len(chain))
	for i, c := range chain {
		ders[i] = c.Raw
	}
	return ks.set(alias, &entry{created: time.Now(), key: der, chain: ders})
}

// PrivateKey returns the key and chain of the key entry alias. Errors wrap
// ErrEntryNotFound or ErrWrongEntryType.
func (ks *KeyStore) PrivateKey(alias string) (crypto.Signer, []*x509.Certificate, error) {
	e, err := ks.lookupType(alias, PrivateKeyEntry)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(e.key)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: key of entry %q: %v", ErrMalformed, alias, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%w: key of entry %q is a %T", ErrUnsupportedKey, alias, k)
	}
	chain, err := parseChain(alias, e.chain)
	if err != nil {
		return nil, nil, err
	}
	return signer, chain, nil
}

// SetTrustedCert stores cert as a trusted certificate entry under alias,
// replacing any entry there.
func (ks *KeyStore) SetTrustedCert(alias string, cert *x509.Certificate) error {
	return ks.set(alias, &entry{created: time.Now(), chain: [][]byte{cert.Raw}})
}

// TrustedCert returns the certificate of the trusted entry alias. Errors
// wrap ErrEntryNotFound or ErrWrongEntryType.
func (ks *KeyStore) TrustedCert(alias string) (*x509.Certificate, error) {
	e, err := ks.lookupType(alias, TrustedCertEntry)
	if err != nil {
		return nil, err
	}
	chain, err := parseChain(alias, e.chain)
	if err != nil {
		return nil, err
	}
	return chain[0], nil
}

// Close clears the private keys held in memory, as a best effort. The
// keystore is empty afterwards.
func (ks *KeyStore) Close() {
	for a, e := range ks.entries {
		clear(e.key)
		delete(ks.entries, a)
	}
}

func (ks *KeyStore) set(alias string, e *entry) error {
	a := normalizeAlias(alias)
	if err := checkAlias(a); err != nil {
		return err
	}
	if _, ok := ks.entries[a]; !ok && len(ks.entries) >= MaxEntries {
		return fmt.Errorf("%w: more than %d entries", ErrTooLarge, MaxEntries)
	}
	if old, ok := ks.entries[a]; ok {
		clear(old.key)
	}
	ks.entries[a] = e
	return nil
}

func (ks *KeyStore) lookup(alias string) (*entry, error) {
	e, ok := ks.entries[normalizeAlias(alias)]
	if !ok {
		return nil, fmt.Errorf("keystore: entry %q: %w", alias, ErrEntryNotFound)
	}
	return e, nil
}

func (ks *KeyStore) lookupType(alias string, want EntryType) (*entry, error) {
	e, err := ks.lookup(alias)
	if err != nil {
		return nil, err
	}
	if got := map[bool]EntryType{true: PrivateKeyEntry, false: TrustedCertEntry}[e.key != nil]; got != want {
		return nil, fmt.Errorf("%w: %q is a %v, not a %v", ErrWrongEntryType, alias, got, want)
	}
	return e, nil
}

// normalizeAlias lower-cases ASCII letters, as Java's keystores do.
func normalizeAlias(alias string) string {
	return strings.ToLower(alias)
}

// checkAlias accepts the aliases that both Java and keystore-go store the
// same way: printable ASCII, 1 to 255 bytes.
func checkAlias(a string) error {
	if a == "" || len(a) > 255 {
		return fmt.Errorf("keystore: alias must be 1 to 255 characters, got %d", len(a))
	}
	for i := range len(a) {
		if a[i] < 0x20 || a[i] > 0x7e {
			return fmt.Errorf("keystore: alias %q: only printable ASCII is allowed", a)
		}
	}
	return nil
}

func parseChain(alias string, ders [][]byte) ([]*x509.Certificate, error) {
	chain := make([]*x509.Certificate, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d of entry %q: %v", ErrMalformed, i, alias, err)
		}
		chain[i] = c
	}
	return chain, nil
}

// matchKey checks that cert holds pub.
func matchKey(cert *x509.Certificate, pub crypto.PublicKey) error {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	p, ok := pub.(equaler)
	if !ok || !p.Equal(cert.PublicKey) {
		return fmt.Errorf("keystore: %w: %q", ErrKeyMismatch, cert.Subject.String())
	}
	return nil
}
