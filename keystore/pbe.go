package keystore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"hash"
	"io"
	"math/big"
	"strconv"
)

// Password-based encryption and MACs of PKCS #12 (RFC 7292, RFC 8018).

var (
	oidPBES2           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidPBMAC1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 14}
	oidHMACWithSHA1    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACWithSHA256  = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACWithSHA384  = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACWithSHA512  = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC       = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC       = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC       = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidPBEWithSHA3DES  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 3}
	oidPBEWithSHARC240 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 6}
	oidPBEWithSHARC2   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 5}
	oidSHA1            = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

type pbes2Params struct {
	KDF pkix.AlgorithmIdentifier
	Enc pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

type pbeParams struct {
	Salt       []byte
	Iterations int
}

// kdf is the key-derivation state of one parse. Every PBKDF2 and PKCS #12
// KDF computation of the file draws on one work budget (MaxKDFIterations
// in total, counted as iterations times output blocks, that is hash
// chains run), so that a file cannot make its reader hash without bound
// however many encrypted safes and keys it holds. Derived keys are cached
// by function, salt, iteration count and length: safes and keys that share
// their parameters (and the password, which is the parse's) derive once.
// The cache owns the keys it returns; close clears them.
type kdf struct {
	password []byte
	left     int
	cache    map[kdfInput][]byte
	// derived counts the derivations computed (cache misses), for tests.
	derived int
}

// kdfInput identifies a derivation: fn names the function and its hash
// ("pbkdf2 <PRF OID>", "pkcs12 <digest OID> <diversifier>").
type kdfInput struct {
	fn         string
	salt       string
	iterations int
	keyLen     int
}

func newKDF(password []byte) *kdf {
	return &kdf{password: password, left: kdfBudget, cache: map[kdfInput][]byte{}}
}

// close clears the cached keys, as a best effort.
func (k *kdf) close() {
	for in, key := range k.cache {
		clear(key)
		delete(k.cache, in)
	}
}

// derive returns the cached key of in, or charges iterations times blocks
// to the budget and computes it with f.
func (k *kdf) derive(in kdfInput, blocks int, f func() ([]byte, error)) ([]byte, error) {
	if key, ok := k.cache[in]; ok {
		return key, nil
	}
	if err := checkIterations(in.iterations); err != nil {
		return nil, err
	}
	// iterations <= kdfBudget and blocks is a few: no overflow.
	cost := in.iterations * blocks
	if cost > k.left {
		return nil, fmt.Errorf("%w: the file asks for more than %d key-derivation iterations in total", ErrWorkLimit, kdfBudget)
	}
	k.left -= cost
	key, err := f()
	if err != nil {
		return nil, err
	}
	k.derived++
	k.cache[in] = key
	return key, nil
}

// pbkdf2 derives keyLen bytes with PBKDF2 (RFC 8018) over HMAC with prf,
// named by its OID.
func (k *kdf) pbkdf2(prfOID asn1.ObjectIdentifier, prf func() hash.Hash, salt []byte, iterations, keyLen int) ([]byte, error) {
	in := kdfInput{fn: "pbkdf2 " + prfOID.String(), salt: string(salt), iterations: iterations, keyLen: keyLen}
	hLen := prf().Size()
	return k.derive(in, (keyLen+hLen-1)/hLen, func() ([]byte, error) {
		return pbkdf2Key(prf, k.password, salt, iterations, keyLen)
	})
}

// pkcs12 derives n bytes with the KDF of RFC 7292 appendix B.2 over the
// digest h (OID digest, block size v) with diversifier id.
func (k *kdf) pkcs12(digest asn1.ObjectIdentifier, h func() hash.Hash, v int, salt []byte, iterations int, id byte, n int) ([]byte, error) {
	in := kdfInput{fn: "pkcs12 " + digest.String() + " " + strconv.Itoa(int(id)), salt: string(salt), iterations: iterations, keyLen: n}
	u := h().Size()
	return k.derive(in, (n+u-1)/u, func() ([]byte, error) {
		bmp := bmpPassword(k.password)
		defer clear(bmp)
		return pkcs12KDF(h, v, salt, bmp, iterations, id, n), nil
	})
}

// pbkdf2Key is crypto/pbkdf2 on a []byte password. crypto/pbkdf2 takes
// the password as a string, a copy that cannot be cleared; the generated
// passphrases this package writes are also in agent.properties in plain
// text, so one more copy on the heap until the next collection is not
// worth a second implementation of PBKDF2.
func pbkdf2Key(prf func() hash.Hash, password, salt []byte, iterations, keyLen int) ([]byte, error) {
	key, err := pbkdf2.Key(prf, string(password), salt, iterations, keyLen)
	if err != nil {
		return nil, fmt.Errorf("keystore: PBKDF2: %w", err)
	}
	return key, nil
}

// pbes2Encrypt encrypts plaintext with PBES2 (PBKDF2-HMAC-SHA256,
// AES-256-CBC), the scheme JDK 17 keytool uses for PKCS #12.
func pbes2Encrypt(rand io.Reader, password, plaintext []byte, iterations int) (pkix.AlgorithmIdentifier, []byte, error) {
	var saltIV [32]byte
	if _, err := io.ReadFull(rand, saltIV[:]); err != nil {
		return pkix.AlgorithmIdentifier{}, nil, fmt.Errorf("keystore: reading random salt: %w", err)
	}
	salt, iv := saltIV[:16], saltIV[16:]
	kdfDER, err := asn1.Marshal(pbkdf2Params{Salt: salt, Iterations: iterations,
		PRF: pkix.AlgorithmIdentifier{Algorithm: oidHMACWithSHA256, Parameters: asn1.NullRawValue}})
	if err != nil {
		return pkix.AlgorithmIdentifier{}, nil, err
	}
	ivDER, err := asn1.Marshal(iv)
	if err != nil {
		return pkix.AlgorithmIdentifier{}, nil, err
	}
	params, err := asn1.Marshal(pbes2Params{
		KDF: pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdfDER}},
		Enc: pkix.AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivDER}},
	})
	if err != nil {
		return pkix.AlgorithmIdentifier{}, nil, err
	}
	key, err := pbkdf2Key(sha256.New, password, salt, iterations, 32)
	if err != nil {
		return pkix.AlgorithmIdentifier{}, nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return pkix.AlgorithmIdentifier{}, nil, err
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	out := make([]byte, len(plaintext)+pad)
	copy(out, plaintext)
	for i := len(plaintext); i < len(out); i++ {
		out[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, out)
	return pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: params}}, out, nil
}

// pbeDecrypt decrypts ciphertext protected with algo: PBES2 with PBKDF2
// and AES-CBC, or PKCS #12's pbeWithSHAAnd3-KeyTripleDES-CBC. Its keys
// come from k, the parse's budget and cache.
func (k *kdf) pbeDecrypt(algo pkix.AlgorithmIdentifier, ciphertext []byte) ([]byte, error) {
	var (
		block cipher.Block
		iv    []byte
	)
	switch {
	case algo.Algorithm.Equal(oidPBES2):
		var err error
		if block, iv, err = k.pbes2Cipher(algo.Parameters.FullBytes); err != nil {
			return nil, err
		}
	case algo.Algorithm.Equal(oidPBEWithSHA3DES):
		var p pbeParams
		if rest, err := asn1.Unmarshal(algo.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("%w: PBE parameters", ErrMalformed)
		}
		key, err := k.pkcs12(oidSHA1, sha1.New, 64, p.Salt, p.Iterations, 1, 24)
		if err != nil {
			return nil, err
		}
		if iv, err = k.pkcs12(oidSHA1, sha1.New, 64, p.Salt, p.Iterations, 2, 8); err != nil {
			return nil, err
		}
		if block, err = des.NewTripleDESCipher(key); err != nil {
			return nil, err
		}
	case algo.Algorithm.Equal(oidPBEWithSHARC240), algo.Algorithm.Equal(oidPBEWithSHARC2):
		return nil, unsupported("RC2 encryption (legacy PKCS #12); re-export with keytool -importkeystore -deststoretype PKCS12 on JDK 12 or later")
	default:
		return nil, unsupported("encryption algorithm %v", algo.Algorithm)
	}
	bs := block.BlockSize()
	if len(iv) != bs {
		return nil, fmt.Errorf("%w: IV of %d bytes for a %d-byte block", ErrMalformed, len(iv), bs)
	}
	if len(ciphertext) == 0 || len(ciphertext)%bs != 0 {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes", ErrMalformed, len(ciphertext))
	}
	out := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ciphertext)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > bs || subtle.ConstantTimeCompare(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) != 1 {
		clear(out)
		// The MAC verified with this password, so the content was
		// encrypted with another one.
		return nil, fmt.Errorf("%w: content encrypted with a different password", ErrIncorrectPassword)
	}
	return out[:len(out)-pad], nil
}

// pbes2Cipher derives the AES key of PBES2 parameters.
func (k *kdf) pbes2Cipher(params []byte) (cipher.Block, []byte, error) {
	var p pbes2Params
	if rest, err := asn1.Unmarshal(params, &p); err != nil || len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w: PBES2 parameters", ErrMalformed)
	}
	if !p.KDF.Algorithm.Equal(oidPBKDF2) {
		return nil, nil, unsupported("PBES2 key derivation %v", p.KDF.Algorithm)
	}
	var kp pbkdf2Params
	if rest, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &kp); err != nil || len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w: PBKDF2 parameters", ErrMalformed)
	}
	var prf func() hash.Hash
	prfOID := kp.PRF.Algorithm
	switch {
	case len(prfOID) == 0, prfOID.Equal(oidHMACWithSHA1):
		prf, prfOID = sha1.New, oidHMACWithSHA1
	case prfOID.Equal(oidHMACWithSHA256):
		prf = sha256.New
	case prfOID.Equal(oidHMACWithSHA384):
		prf = sha512.New384
	case prfOID.Equal(oidHMACWithSHA512):
		prf = sha512.New
	default:
		return nil, nil, unsupported("PBKDF2 function %v", prfOID)
	}
	var keyLen int
	switch alg := p.Enc.Algorithm; {
	case alg.Equal(oidAES128CBC):
		keyLen = 16
	case alg.Equal(oidAES192CBC):
		keyLen = 24
	case alg.Equal(oidAES256CBC):
		keyLen = 32
	default:
		return nil, nil, unsupported("PBES2 cipher %v", alg)
	}
	if kp.KeyLength != 0 && kp.KeyLength != keyLen {
		return nil, nil, fmt.Errorf("%w: PBKDF2 key length %d for a %d-byte key", ErrMalformed, kp.KeyLength, keyLen)
	}
	var iv []byte
	if rest, err := asn1.Unmarshal(p.Enc.Parameters.FullBytes, &iv); err != nil || len(rest) != 0 || len(iv) != aes.BlockSize {
		return nil, nil, fmt.Errorf("%w: AES-CBC IV", ErrMalformed)
	}
	key, err := k.pbkdf2(prfOID, prf, kp.Salt, kp.Iterations, keyLen)
	if err != nil {
		return nil, nil, err
	}
	block, err := aes.NewCipher(key)
	return block, iv, err
}

// kdfBudget and writeIterations are MaxKDFIterations and
// pkcs12Iterations; the fuzz tests lower both so that they spend their
// time on structure rather than on hashing.
var (
	kdfBudget       = MaxKDFIterations
	writeIterations = pkcs12Iterations
)

// checkIterations refuses iteration counts below 1 and above the whole
// budget of a parse.
func checkIterations(n int) error {
	if n < 1 {
		return fmt.Errorf("%w: %d iterations", ErrMalformed, n)
	}
	if n > kdfBudget {
		return fmt.Errorf("%w: %d iterations, limit %d per file", ErrWorkLimit, n, kdfBudget)
	}
	return nil
}

// bmpPassword encodes an ASCII password as PKCS #12 wants it for its own
// KDF: UTF-16BE with a terminating NUL. An empty password is empty.
func bmpPassword(password []byte) []byte {
	if len(password) == 0 {
		return nil
	}
	out := make([]byte, 2*len(password)+2)
	for i, c := range password {
		out[2*i+1] = c
	}
	return out
}

// pkcs12KDF is the key derivation of RFC 7292 appendix B.2, with hash h of
// block size v, diversifier id (1 key, 2 IV, 3 MAC key), producing n bytes.
func pkcs12KDF(h func() hash.Hash, v int, salt, bmpPass []byte, iter int, id byte, n int) []byte {
	hf := h()
	u := hf.Size()
	d := bytes.Repeat([]byte{id}, v)
	fill := func(src []byte) []byte {
		if len(src) == 0 {
			return nil
		}
		out := make([]byte, v*((len(src)+v-1)/v))
		for i := range out {
			out[i] = src[i%len(src)]
		}
		return out
	}
	s, p := fill(salt), fill(bmpPass)
	in := append(s, p...)
	defer clear(in)
	clear(p)
	out := make([]byte, 0, n+u)
	a := make([]byte, 0, u)
	b := make([]byte, v)
	one := big.NewInt(1)
	for len(out) < n {
		hf.Reset()
		hf.Write(d)
		hf.Write(in)
		a = hf.Sum(a[:0])
		for range iter - 1 {
			hf.Reset()
			hf.Write(a)
			a = hf.Sum(a[:0])
		}
		out = append(out, a...)
		if len(out) >= n {
			break
		}
		for i := range b {
			b[i] = a[i%u]
		}
		// Each v-byte block of in becomes (block + b + 1) mod 2^(8v).
		bb := new(big.Int).SetBytes(b)
		bb.Add(bb, one)
		for j := 0; j < len(in); j += v {
			blk := new(big.Int).SetBytes(in[j : j+v])
			blk.Add(blk, bb)
			buf := blk.Bytes()
			if len(buf) > v {
				buf = buf[len(buf)-v:]
			}
			clear(in[j : j+v])
			copy(in[j+v-len(buf):j+v], buf)
		}
	}
	return out[:n]
}

// macHash maps a MAC digest OID to the hash and its block size.
func macHash(oid asn1.ObjectIdentifier) (func() hash.Hash, int, error) {
	switch {
	case oid.Equal(oidSHA1):
		return sha1.New, 64, nil
	case oid.Equal(oidSHA256):
		return sha256.New, 64, nil
	case oid.Equal(oidSHA384):
		return sha512.New384, 128, nil
	case oid.Equal(oidSHA512):
		return sha512.New, 128, nil
	case oid.Equal(oidPBMAC1):
		return nil, 0, unsupported("PBMAC1 MAC (JDK 26 / OpenSSL 3.4); JDK 17 cannot read it either")
	}
	return nil, 0, unsupported("MAC digest %v", oid)
}

// pkcs12MAC computes PKCS #12's HMAC over content with key, derived by
// the PKCS #12 KDF with diversifier 3.
func pkcs12MAC(h func() hash.Hash, key, content []byte) []byte {
	m := hmac.New(h, key)
	m.Write(content)
	return m.Sum(nil)
}
