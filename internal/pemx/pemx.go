package pemx

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// Bounds on what one file may hold. A CA bundle holds a root and a few
// intermediates; a CRL file one CRL per CA.
const (
	// MaxCertificates is the most CERTIFICATE blocks ParseCertificates
	// accepts.
	MaxCertificates = 64
	// MaxCRLs is the most X509 CRL blocks ParseCRLs accepts.
	MaxCRLs = 16
)

// PEM block types.
const (
	TypeCertificate = "CERTIFICATE"
	TypeCRL         = "X509 CRL"
)

var (
	// ErrEncryptedKey: the key file holds an encrypted private key.
	ErrEncryptedKey = errors.New("encrypted private key; libvirt and QEMU need an unencrypted key")
	// ErrNoBlock: the file holds no block of the kind wanted.
	ErrNoBlock = errors.New("no PEM block of the expected type")
	// ErrUnexpectedBlock: the file holds a PEM block of a type it must
	// not hold.
	ErrUnexpectedBlock = errors.New("unexpected PEM block")
	// ErrTooMany: the file holds more blocks than the bound.
	ErrTooMany = errors.New("too many PEM blocks")
)

// ParseCertificates parses every block of data, which must all be
// CERTIFICATE blocks: at least one and at most MaxCertificates.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	b, rest := pem.Decode(data)
	for ; b != nil; b, rest = pem.Decode(rest) {
		if b.Type != TypeCertificate {
			return nil, fmt.Errorf("%w: a %q block where only %s blocks belong", ErrUnexpectedBlock, b.Type, TypeCertificate)
		}
		if len(certs) == MaxCertificates {
			return nil, fmt.Errorf("%w: more than %d certificates", ErrTooMany, MaxCertificates)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if err := checkTail(rest); err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no %s block", ErrNoBlock, TypeCertificate)
	}
	return certs, nil
}

// ParsePrivateKey returns the key of the first private key block of data
// ("PRIVATE KEY", "EC PRIVATE KEY" or "RSA PRIVATE KEY"), skipping blocks
// of other types (such as "EC PARAMETERS" or a certificate). An encrypted
// key gives an error wrapping ErrEncryptedKey. Errors name the block
// type only.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		if _, encrypted := b.Headers["DEK-Info"]; encrypted || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, fmt.Errorf("%w (%s block)", ErrEncryptedKey, b.Type)
		}
		var k any
		var err error
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
		if err != nil {
			// The parser's error may quote the key's bytes: name the
			// block only.
			return nil, fmt.Errorf("parsing the %s block failed", b.Type)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("the %s block holds an unsupported key type %T", b.Type, k)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: no private key block", ErrNoBlock)
}

// ParseCRLs parses a CRL file: PEM whose blocks are all X509 CRL blocks
// (at least one, at most MaxCRLs), or, when data holds no PEM block, one
// DER CRL. The CRLs' signatures are not checked here; see package
// revocation.
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	if err := CheckCRLBlocks(data); err != nil {
		return nil, err
	}
	if !isPEM(data) {
		crl, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("neither a PEM %s block nor a DER CRL: %w", TypeCRL, err)
		}
		return []*x509.RevocationList{crl}, nil
	}
	var crls []*x509.RevocationList
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		crl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %w", len(crls)+1, err)
		}
		crls = append(crls, crl)
	}
	return crls, nil
}

// CheckCRLBlocks refuses PEM data holding a block other than an X509 CRL
// block, or more than MaxCRLs blocks. Data without PEM blocks (DER, or
// empty) passes. It is the check to make before installing a CRL file
// world-readable.
func CheckCRLBlocks(data []byte) error {
	n := 0
	b, rest := pem.Decode(data)
	if b == nil {
		// DER, or nothing: only a broken PEM header is refused.
		return checkTail(data)
	}
	for ; b != nil; b, rest = pem.Decode(rest) {
		if b.Type != TypeCRL {
			return fmt.Errorf("%w: CRL file holds a %q PEM block", ErrUnexpectedBlock, b.Type)
		}
		if n++; n > MaxCRLs {
			return fmt.Errorf("%w: more than %d CRLs", ErrTooMany, MaxCRLs)
		}
	}
	return checkTail(rest)
}

// checkTail refuses a PEM header left after the last block that decoded:
// a truncated or malformed block would otherwise be skipped silently.
func checkTail(rest []byte) error {
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return fmt.Errorf("%w: a PEM block that does not decode", ErrUnexpectedBlock)
	}
	return nil
}

// CRLPEM returns a CRL file as PEM: PEM data unchanged, DER encoded as one
// X509 CRL block, empty data as nil. Check it with CheckCRLBlocks or
// ParseCRLs first.
func CRLPEM(data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	if isPEM(data) {
		return data
	}
	return pem.EncodeToMemory(&pem.Block{Type: TypeCRL, Bytes: data})
}

// isPEM reports whether data holds a PEM block.
func isPEM(data []byte) bool {
	b, _ := pem.Decode(data)
	return b != nil
}

// ParseKeyPair parses a certificate file (the leaf first, then any
// intermediates; see ParseCertificates) and its key file (see
// ParsePrivateKey), and checks that the key is the leaf's: an error wraps
// [pkicore.ErrKeyMismatch] when it is not.
func ParseKeyPair(certPEM, keyPEM []byte) ([]*x509.Certificate, crypto.Signer, error) {
	chain, err := ParseCertificates(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate file: %w", err)
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("key file: %w", err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := key.Public().(equaler); !ok || !pub.Equal(chain[0].PublicKey) {
		return nil, nil, fmt.Errorf("%w (%q)", pkicore.ErrKeyMismatch, chain[0].Subject.String())
	}
	return chain, key, nil
}
