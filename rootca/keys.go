package rootca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"

	"github.com/kvmpki/kvmpki/provider"
)

// generateKey makes a key of the given algorithm and size; zero values
// select the given defaults.
func generateKey(rnd io.Reader, alg provider.KeyAlgorithm, size int, defAlg provider.KeyAlgorithm, defRSA int) (crypto.Signer, error) {
	if alg == provider.KeyAlgorithmDefault {
		alg = defAlg
	}
	switch alg {
	case provider.KeyAlgorithmRSA:
		if size == 0 {
			size = defRSA
		}
		if size < minRSAKeySize || size > maxRSAKeySize {
			return nil, fmt.Errorf("RSA key size %d outside %d..%d", size, minRSAKeySize, maxRSAKeySize)
		}
		return rsa.GenerateKey(rnd, size)
	case provider.KeyAlgorithmECDSA:
		if size == 0 {
			size = 256
		}
		curve, err := curveForSize(size)
		if err != nil {
			return nil, err
		}
		return ecdsa.GenerateKey(curve, rnd)
	}
	return nil, fmt.Errorf("unsupported key algorithm %v", alg)
}

func curveForSize(bits int) (elliptic.Curve, error) {
	switch bits {
	case 256:
		return elliptic.P256(), nil
	case 384:
		return elliptic.P384(), nil
	case 521:
		return elliptic.P521(), nil
	}
	return nil, fmt.Errorf("unsupported ECDSA curve size %d (want 256, 384 or 521)", bits)
}

// keyPolicy is the key policy rootca applies to every key it certifies,
// its own included: provider's, with rootca's RSA bounds.
var keyPolicy = &provider.CSRPolicy{MinRSAKeySize: minRSAKeySize, MaxRSAKeySize: maxRSAKeySize}

// checkPublicKey enforces keyPolicy through the one implementation of the
// rule, provider.CheckPublicKey.
func checkPublicKey(pub crypto.PublicKey) error { return provider.CheckPublicKey(pub, keyPolicy) }

// signatureAlgorithmFor returns the signature algorithm for a CA key, or
// checks the configured one.
func signatureAlgorithmFor(pub crypto.PublicKey, configured x509.SignatureAlgorithm) (x509.SignatureAlgorithm, error) {
	if configured != x509.UnknownSignatureAlgorithm {
		if err := provider.CheckSignatureAlgorithm(configured); err != nil {
			return 0, fmt.Errorf("rootca: %w", err)
		}
		return configured, nil
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return x509.SHA256WithRSA, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P384():
			return x509.ECDSAWithSHA384, nil
		case elliptic.P521():
			return x509.ECDSAWithSHA512, nil
		}
		return x509.ECDSAWithSHA256, nil
	}
	return 0, fmt.Errorf("rootca: CA key type %T is not supported", pub)
}

// subjectKeyID computes a key identifier by RFC 7093 section 2 method 1:
// the leftmost 160 bits of the SHA-256 hash of the subjectPublicKey bits.
// Go sets one only for CA templates; leaves need it too.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	var bits []byte
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		// The subjectPublicKey of an EC key is the uncompressed point.
		b, err := k.Bytes()
		if err != nil {
			return nil, err
		}
		bits = b
	case *rsa.PublicKey:
		bits = x509.MarshalPKCS1PublicKey(k)
	default:
		spki, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, err
		}
		var info struct {
			Algorithm asn1.RawValue
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(spki, &info); err != nil {
			return nil, err
		}
		bits = info.PublicKey.Bytes
	}
	sum := sha256.Sum256(bits)
	return sum[:20], nil
}

// samePublicKey reports whether two public keys are equal.
func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
