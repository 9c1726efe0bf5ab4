package rootca

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// ErrIncorrectPassword means the CA key could not be decrypted with the
// password given.
var ErrIncorrectPassword = errors.New("rootca: incorrect CA key password")

const encryptedKeyBlock = "ENCRYPTED PRIVATE KEY"

// The stored CA key is an encrypted PKCS #8 key (RFC 5958) with PBES2
// (RFC 8018): PBKDF2 with HMAC-SHA256, then AES-256-CBC. The store is
// written by whoever can write the database, so decryptKey checks every
// parameter before it derives or decrypts anything.
const (
	// keyIterations is the PBKDF2 iteration count of a key encryptKey
	// writes (OWASP's 2023 figure for PBKDF2-HMAC-SHA256).
	keyIterations = 600_000
	// minKeyIterations and maxKeyIterations bound the count of a stored
	// key: at least RFC 8018's 1,000, and at most a few seconds of work,
	// so that a hostile count cannot stall every server that opens the
	// store.
	minKeyIterations = 1_000
	maxKeyIterations = 2_000_000
	// keySaltSize is the salt length encryptKey writes; a stored salt must
	// hold minKeySaltSize to maxKeySaltSize bytes (RFC 8018 asks for at
	// least 8).
	keySaltSize    = 16
	minKeySaltSize = 8
	maxKeySaltSize = 64
	// maxKeyCiphertext bounds the encrypted key: an RSA-8192 PKCS #8
	// key is under 5 KiB.
	maxKeyCiphertext = 16 << 10
)

var (
	oidPBES2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// The ASN.1 of an encrypted PKCS #8 key with PBES2 and PBKDF2.
type (
	encryptedKeyInfo struct {
		Algorithm pbes2Algorithm
		Data      []byte
	}
	pbes2Algorithm struct {
		Algorithm asn1.ObjectIdentifier
		Params    pbes2Params
	}
	pbes2Params struct {
		KDF kdfAlgorithm
		Enc encAlgorithm
	}
	kdfAlgorithm struct {
		Algorithm asn1.ObjectIdentifier
		Params    pbkdf2Params
	}
	pbkdf2Params struct {
		Salt       []byte
		Iterations int
		KeyLength  int                      `asn1:"optional"`
		PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
	}
	encAlgorithm struct {
		Algorithm asn1.ObjectIdentifier
		IV        []byte
	}
)

// encryptKey returns key as an encrypted PKCS #8 PEM block (PBES2,
// PBKDF2-HMAC-SHA256, AES-256-CBC).
func encryptKey(rnd io.Reader, key crypto.Signer, password []byte) ([]byte, error) {
	return encryptKeyIterations(rnd, key, password, newKeyIterations)
}

func encryptKeyIterations(rnd io.Reader, key crypto.Signer, password []byte, iterations int) ([]byte, error) {
	if len(password) == 0 {
		return nil, errors.New("rootca: empty CA key password")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("rootca: marshal CA key: %w", err)
	}
	defer clear(der)
	salt, iv := make([]byte, keySaltSize), make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return nil, fmt.Errorf("rootca: encrypt CA key: %w", err)
	}
	if _, err := io.ReadFull(rnd, iv); err != nil {
		return nil, fmt.Errorf("rootca: encrypt CA key: %w", err)
	}
	block, err := keyCipher(password, salt, iterations)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(der)%aes.BlockSize
	data := make([]byte, len(der)+pad)
	copy(data, der)
	for i := len(der); i < len(data); i++ {
		data[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(data, data)
	info, err := asn1.Marshal(encryptedKeyInfo{
		Algorithm: pbes2Algorithm{
			Algorithm: oidPBES2,
			Params: pbes2Params{
				KDF: kdfAlgorithm{Algorithm: oidPBKDF2, Params: pbkdf2Params{
					Salt: salt, Iterations: iterations,
					PRF: pkix.AlgorithmIdentifier{Algorithm: oidHMACWithSHA256, Parameters: asn1.NullRawValue},
				}},
				Enc: encAlgorithm{Algorithm: oidAES256CBC, IV: iv},
			},
		},
		Data: data,
	})
	if err != nil {
		return nil, fmt.Errorf("rootca: encrypt CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: encryptedKeyBlock, Bytes: info}), nil
}

// keyCipher derives the AES-256 key from password.
func keyCipher(password, salt []byte, iterations int) (cipher.Block, error) {
	k, err := pbkdf2.Key(sha256.New, string(password), salt, iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("rootca: CA key derivation: %w", err)
	}
	defer clear(k)
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("rootca: CA key cipher: %w", err)
	}
	return block, nil
}

// StoredKeyError reports a stored CA key that is malformed or uses
// parameters rootca does not accept. It never holds key material.
type StoredKeyError struct {
	// Reason says what is wrong, such as "IV of 3 bytes (want 16)".
	Reason string
}

func (e *StoredKeyError) Error() string { return "rootca: stored CA key: " + e.Reason }

func storedKeyError(format string, args ...any) error {
	return &StoredKeyError{Reason: fmt.Sprintf(format, args...)}
}

// parseEncryptedKey decodes a stored key block and checks every PBES2
// parameter, without deriving a key: the algorithms are those encryptKey
// writes, the counts and lengths are bounded, and the ciphertext is a
// non-empty whole number of blocks.
func parseEncryptedKey(data []byte) (*encryptedKeyInfo, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != encryptedKeyBlock {
		return nil, storedKeyError("not an encrypted PKCS #8 PEM block")
	}
	var info encryptedKeyInfo
	rest, err := asn1.Unmarshal(block.Bytes, &info)
	if err != nil {
		return nil, storedKeyError("malformed encrypted PKCS #8 structure")
	}
	if len(rest) > 0 {
		return nil, storedKeyError("trailing data after the encrypted PKCS #8 structure")
	}
	alg := &info.Algorithm
	kdf := &alg.Params.KDF
	switch {
	case !alg.Algorithm.Equal(oidPBES2):
		return nil, storedKeyError("encryption scheme %v is not PBES2", alg.Algorithm)
	case !kdf.Algorithm.Equal(oidPBKDF2):
		return nil, storedKeyError("key derivation %v is not PBKDF2", kdf.Algorithm)
	case !kdf.Params.PRF.Algorithm.Equal(oidHMACWithSHA256):
		// An absent PRF means HMAC-SHA1, which encryptKey never writes.
		return nil, storedKeyError("PBKDF2 PRF %v is not HMAC-SHA256", kdf.Params.PRF.Algorithm)
	case len(kdf.Params.PRF.Parameters.FullBytes) > 0 && !isASN1Null(kdf.Params.PRF.Parameters):
		return nil, storedKeyError("PBKDF2 PRF parameters are not NULL")
	case kdf.Params.KeyLength != 0 && kdf.Params.KeyLength != 32:
		return nil, storedKeyError("PBKDF2 key length %d (want 32)", kdf.Params.KeyLength)
	case kdf.Params.Iterations < minKeyIterations || kdf.Params.Iterations > maxKeyIterations:
		return nil, storedKeyError("PBKDF2 iteration count %d outside %d..%d",
			kdf.Params.Iterations, minKeyIterations, maxKeyIterations)
	case len(kdf.Params.Salt) < minKeySaltSize || len(kdf.Params.Salt) > maxKeySaltSize:
		return nil, storedKeyError("PBKDF2 salt of %d bytes (want %d..%d)",
			len(kdf.Params.Salt), minKeySaltSize, maxKeySaltSize)
	case !alg.Params.Enc.Algorithm.Equal(oidAES256CBC):
		return nil, storedKeyError("cipher %v is not AES-256-CBC", alg.Params.Enc.Algorithm)
	case len(alg.Params.Enc.IV) != aes.BlockSize:
		return nil, storedKeyError("IV of %d bytes (want %d)", len(alg.Params.Enc.IV), aes.BlockSize)
	case len(info.Data) == 0 || len(info.Data)%aes.BlockSize != 0:
		return nil, storedKeyError("ciphertext of %d bytes is not a non-empty multiple of %d",
			len(info.Data), aes.BlockSize)
	case len(info.Data) > maxKeyCiphertext:
		return nil, storedKeyError("ciphertext of %d bytes is over %d", len(info.Data), maxKeyCiphertext)
	}
	return &info, nil
}

func isASN1Null(v asn1.RawValue) bool {
	return v.Class == asn1.ClassUniversal && v.Tag == asn1.TagNull && len(v.Bytes) == 0
}

// decryptKey reverses encryptKey. A malformed block or unaccepted
// parameters yield a *StoredKeyError, a wrong password
// ErrIncorrectPassword. Errors never include key material.
func decryptKey(data, password []byte) (crypto.Signer, error) {
	info, err := parseEncryptedKey(data)
	if err != nil {
		return nil, err
	}
	kdf := &info.Algorithm.Params.KDF.Params
	block, err := keyCipher(password, kdf.Salt, kdf.Iterations)
	if err != nil {
		return nil, err
	}
	der := make([]byte, len(info.Data))
	defer clear(der)
	cipher.NewCBCDecrypter(block, info.Algorithm.Params.Enc.IV).CryptBlocks(der, info.Data)
	// PKCS #7 padding. A wrong password shows up here, or as garbage
	// that does not parse below.
	pad := int(der[len(der)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, ErrIncorrectPassword
	}
	want := make([]byte, pad)
	for i := range want {
		want[i] = byte(pad)
	}
	if subtle.ConstantTimeCompare(der[len(der)-pad:], want) != 1 {
		return nil, ErrIncorrectPassword
	}
	key, err := x509.ParsePKCS8PrivateKey(der[:len(der)-pad])
	if err != nil {
		return nil, ErrIncorrectPassword
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, storedKeyError("key of type %T is not a signer", key)
	}
	return signer, nil
}
