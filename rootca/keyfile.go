package rootca

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	"go.step.sm/crypto/pemutil"
)

// ErrIncorrectPassword means the CA key could not be decrypted with the
// password given.
var ErrIncorrectPassword = errors.New("rootca: incorrect CA key password")

const encryptedKeyBlock = "ENCRYPTED PRIVATE KEY"

// encryptKey returns key as an encrypted PKCS #8 PEM block (PBES2,
// PBKDF2-HMAC-SHA256, AES-256-CBC).
func encryptKey(rnd io.Reader, key crypto.Signer, password []byte) ([]byte, error) {
	if len(password) == 0 {
		return nil, errors.New("rootca: empty CA key password")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("rootca: marshal CA key: %w", err)
	}
	defer clear(der)
	block, err := pemutil.EncryptPKCS8PrivateKey(rnd, der, password, x509.PEMCipherAES256)
	if err != nil {
		return nil, fmt.Errorf("rootca: encrypt CA key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// decryptKey reverses encryptKey. Errors never include key material.
func decryptKey(data, password []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != encryptedKeyBlock {
		return nil, errors.New("rootca: stored CA key is not an encrypted PKCS #8 PEM block")
	}
	der, err := pemutil.DecryptPKCS8PrivateKey(block.Bytes, password)
	if err != nil {
		return nil, ErrIncorrectPassword
	}
	defer clear(der)
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		// A wrong password usually shows up here, as garbage after
		// CBC decryption with a valid-looking padding.
		return nil, ErrIncorrectPassword
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("rootca: stored CA key of type %T is not a signer", key)
	}
	return signer, nil
}
