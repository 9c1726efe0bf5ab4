package rootca

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// NewRoot creates a self-signed root certificate and its key from opts
// (KeyAlgorithm, KeySize, Subject, Validity, and SignatureAlgorithm,
// Signer, Time and Rand of its Options), without a store. It serves to
// make a root that stays offline and signs an intermediate through
// CreateOptions.Parent. A nil opts means the zero CreateOptions: a new
// ECDSA P-256 key.
func NewRoot(opts *CreateOptions) (*x509.Certificate, crypto.Signer, error) {
	var o CreateOptions
	if opts != nil {
		o = *opts
	}
	key := o.Signer
	if key == nil {
		var err error
		if key, err = generateKey(o.rand(), o.KeyAlgorithm, o.KeySize, defaultCAKeyAlgorithm, defaultRSACAKeySize); err != nil {
			return nil, nil, fmt.Errorf("rootca: root key: %w", err)
		}
	}
	if err := checkPublicKey(key.Public()); err != nil {
		return nil, nil, fmt.Errorf("rootca: root key: %w", err)
	}
	der, err := newRootDER(&o, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("rootca: parse root: %w", err)
	}
	return cert, key, nil
}

func caTemplate(o *CreateOptions, pub crypto.PublicKey) (*x509.Certificate, error) {
	serial, err := randomSerial(o.rand())
	if err != nil {
		return nil, err
	}
	subject := o.Subject
	if len(subject.ToRDNSequence()) == 0 {
		if subject, err = ParseDN(defaultSubject); err != nil {
			return nil, err
		}
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("rootca: CA key identifier: %w", err)
	}
	now := o.now().UTC().Truncate(time.Second)
	notBefore := now.Add(-o.backdate())
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              now.Add(o.validity()),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski,
	}, nil
}

func newRootDER(o *CreateOptions, key crypto.Signer) ([]byte, error) {
	tmpl, err := caTemplate(o, key.Public())
	if err != nil {
		return nil, err
	}
	if tmpl.SignatureAlgorithm, err = signatureAlgorithmFor(key.Public(), o.SignatureAlgorithm); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(o.rand(), tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("rootca: create root certificate: %w", err)
	}
	return der, nil
}

func newIntermediate(o *CreateOptions, key crypto.Signer, parent *Issuer) ([]byte, error) {
	if parent.Certificate == nil || parent.Signer == nil {
		return nil, errors.New("rootca: CreateOptions.Parent needs a certificate and a signer")
	}
	if !parent.Certificate.IsCA || parent.Certificate.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("rootca: parent %s is not a CA", parent.Certificate.Subject)
	}
	if !samePublicKey(parent.Signer.Public(), parent.Certificate.PublicKey) {
		return nil, errors.New("rootca: parent key does not match the parent certificate")
	}
	tmpl, err := caTemplate(o, key.Public())
	if err != nil {
		return nil, err
	}
	if len(o.Subject.ToRDNSequence()) == 0 {
		tmpl.Subject = pkix.Name{
			ExtraNames: []pkix.AttributeTypeAndValue{
				{Type: oidOrganization, Value: "kvmpki"},
				{Type: oidCommonName, Value: "kvmpki intermediate CA"},
			},
		}
	}
	tmpl.MaxPathLenZero = true
	if tmpl.NotBefore.Before(parent.Certificate.NotBefore) {
		tmpl.NotBefore = parent.Certificate.NotBefore
	}
	if tmpl.NotAfter.After(parent.Certificate.NotAfter) {
		tmpl.NotAfter = parent.Certificate.NotAfter
	}
	if tmpl.SignatureAlgorithm, err = signatureAlgorithmFor(parent.Signer.Public(), o.SignatureAlgorithm); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(o.rand(), tmpl, parent.Certificate, key.Public(), parent.Signer)
	if err != nil {
		return nil, fmt.Errorf("rootca: create intermediate certificate: %w", err)
	}
	return der, nil
}

var (
	oidCommonName   = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOrganization = asn1.ObjectIdentifier{2, 5, 4, 10}
)

// randomSerial returns a positive serial of 159 random bits. It fits in
// the 20 octets RFC 5280 allows, and its entropy is well above the 64 bits
// the CA/Browser Forum asks for and the 128 bits kvmpki promises.
func randomSerial(rnd io.Reader) (*big.Int, error) {
	var b [20]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return nil, fmt.Errorf("rootca: serial: %w", err)
	}
	b[0] &= 0x7f
	n := new(big.Int).SetBytes(b[:])
	if n.Sign() == 0 {
		return nil, errors.New("rootca: serial: random source returned zeros")
	}
	return n, nil
}
