package rootca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
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

// checkPublicKey enforces the key policy on a key to be certified: RSA of
// minRSAKeySize..MaxRSAKeySize bits with a sane exponent, or ECDSA on
// P-256, P-384 or P-521. Everything else is refused.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < minRSAKeySize {
			return fmt.Errorf("RSA key of %d bits is too weak (minimum %d)", bits, minRSAKeySize)
		}
		if bits > maxRSAKeySize {
			return fmt.Errorf("RSA key of %d bits is too large (maximum %d)", bits, maxRSAKeySize)
		}
		if k.E < 65537 || k.E%2 == 0 {
			return fmt.Errorf("RSA public exponent %d is not allowed (want an odd value of at least 65537)", k.E)
		}
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("ECDSA curve %s is not allowed", k.Curve.Params().Name)
	case nil:
		return errors.New("no public key")
	}
	return fmt.Errorf("public key type %T is not allowed (want RSA or ECDSA)", pub)
}

// signatureAlgorithmFor returns the signature algorithm for a CA key, or
// checks the configured one.
func signatureAlgorithmFor(pub crypto.PublicKey, configured x509.SignatureAlgorithm) (x509.SignatureAlgorithm, error) {
	if configured != x509.UnknownSignatureAlgorithm {
		if !allowedSignatureAlgorithms[configured] {
			return 0, fmt.Errorf("rootca: signature algorithm %v is not allowed", configured)
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
