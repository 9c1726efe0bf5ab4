package keystore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509/pkix"
	"encoding"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math/big"
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

// pbes2Encrypt encrypts plaintext with PBES2 (PBKDF2-HMAC-SHA256,
// AES-256-CBC), the scheme JDK 17 keytool uses for PKCS #12.
func pbes2Encrypt(rand io.Reader, password, plaintext []byte, iterations int) (pkix.AlgorithmIdentifier, []byte, error) {
	var saltIV [32]byte
	if _, err := io.ReadFull(rand, saltIV[:]); err != nil {
		return pkix.AlgorithmIdentifier{}, nil, fmt.Errorf("keystore: reading random salt: %w", err)
	}
	salt, iv := saltIV[:16], saltIV[16:]
	kdf, err := asn1.Marshal(pbkdf2Params{Salt: salt, Iterations: iterations,
		PRF: pkix.AlgorithmIdentifier{Algorithm: oidHMACWithSHA256, Parameters: asn1.NullRawValue}})
	if err != nil {
		return pkix.AlgorithmIdentifier{}, nil, err
	}
	ivDER, err := asn1.Marshal(iv)
	if err != nil {
		return pkix.AlgorithmIdentifier{}, nil, err
	}
	params, err := asn1.Marshal(pbes2Params{
		KDF: pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdf}},
		Enc: pkix.AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivDER}},
	})
	if err != nil {
		return pkix.AlgorithmIdentifier{}, nil, err
	}
	key := pbkdf2Key(sha256.New, password, salt, iterations, 32)
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
// and AES-CBC, or PKCS #12's pbeWithSHAAnd3-KeyTripleDES-CBC.
func pbeDecrypt(algo pkix.AlgorithmIdentifier, password, ciphertext []byte) ([]byte, error) {
	var (
		block cipher.Block
		iv    []byte
	)
	switch {
	case algo.Algorithm.Equal(oidPBES2):
		var err error
		if block, iv, err = pbes2Cipher(algo.Parameters.FullBytes, password); err != nil {
			return nil, err
		}
	case algo.Algorithm.Equal(oidPBEWithSHA3DES):
		var p pbeParams
		if rest, err := asn1.Unmarshal(algo.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("%w: PBE parameters", ErrMalformed)
		}
		if err := checkIterations(p.Iterations); err != nil {
			return nil, err
		}
		bmp := bmpPassword(password)
		defer clear(bmp)
		key := pkcs12KDF(sha1.New, 64, p.Salt, bmp, p.Iterations, 1, 24)
		defer clear(key)
		iv = pkcs12KDF(sha1.New, 64, p.Salt, bmp, p.Iterations, 2, 8)
		var err error
		if block, err = des.NewTripleDESCipher(key); err != nil {
			return nil, err
		}
	case algo.Algorithm.Equal(oidPBEWithSHARC240), algo.Algorithm.Equal(oidPBEWithSHARC2):
		return nil, fmt.Errorf("%w: RC2 encryption (legacy PKCS #12); re-export with keytool -importkeystore -deststoretype PKCS12 on JDK 12 or later", ErrUnsupported)
	default:
		return nil, fmt.Errorf("%w: encryption algorithm %v", ErrUnsupported, algo.Algorithm)
	}
	bs := block.BlockSize()
	if len(ciphertext) == 0 || len(ciphertext)%bs != 0 {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes", ErrMalformed, len(ciphertext))
	}
	out := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ciphertext)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > bs || subtle.ConstantTimeCompare(out[len(out)-pad:], repeatByte(byte(pad), pad)) != 1 {
		clear(out)
		// The MAC verified with this password, so the content was
		// encrypted with another one.
		return nil, fmt.Errorf("%w: content encrypted with a different password", ErrIncorrectPassword)
	}
	return out[:len(out)-pad], nil
}

func repeatByte(b byte, n int) []byte {
	s := make([]byte, n)
	for i := range s {
		s[i] = b
	}
	return s
}

// pbes2Cipher derives the AES key of PBES2 parameters from password.
func pbes2Cipher(params, password []byte) (cipher.Block, []byte, error) {
	var p pbes2Params
	if rest, err := asn1.Unmarshal(params, &p); err != nil || len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w: PBES2 parameters", ErrMalformed)
	}
	if !p.KDF.Algorithm.Equal(oidPBKDF2) {
		return nil, nil, fmt.Errorf("%w: PBES2 key derivation %v", ErrUnsupported, p.KDF.Algorithm)
	}
	var kp pbkdf2Params
	if rest, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &kp); err != nil || len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w: PBKDF2 parameters", ErrMalformed)
	}
	if err := checkIterations(kp.Iterations); err != nil {
		return nil, nil, err
	}
	var prf func() hash.Hash
	switch alg := kp.PRF.Algorithm; {
	case len(alg) == 0, alg.Equal(oidHMACWithSHA1):
		prf = sha1.New
	case alg.Equal(oidHMACWithSHA256):
		prf = sha256.New
	case alg.Equal(oidHMACWithSHA384):
		prf = sha512.New384
	case alg.Equal(oidHMACWithSHA512):
		prf = sha512.New
	default:
		return nil, nil, fmt.Errorf("%w: PBKDF2 function %v", ErrUnsupported, alg)
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
		return nil, nil, fmt.Errorf("%w: PBES2 cipher %v", ErrUnsupported, alg)
	}
	if kp.KeyLength != 0 && kp.KeyLength != keyLen {
		return nil, nil, fmt.Errorf("%w: PBKDF2 key length %d for a %d-byte key", ErrMalformed, kp.KeyLength, keyLen)
	}
	var iv []byte
	if rest, err := asn1.Unmarshal(p.Enc.Parameters.FullBytes, &iv); err != nil || len(rest) != 0 || len(iv) != aes.BlockSize {
		return nil, nil, fmt.Errorf("%w: AES-CBC IV", ErrMalformed)
	}
	key := pbkdf2Key(prf, password, kp.Salt, kp.Iterations, keyLen)
	defer clear(key)
	block, err := aes.NewCipher(key)
	return block, iv, err
}

// iterationLimit and writeIterations are maxPKCS12Iterations and
// pkcs12Iterations; the fuzz test lowers both so that it spends its time
// on structure rather than on hashing.
var (
	iterationLimit  = maxPKCS12Iterations
	writeIterations = pkcs12Iterations
)

func checkIterations(n int) error {
	if n < 1 || n > iterationLimit {
		return fmt.Errorf("%w: %d iterations (1 to %d accepted)", ErrMalformed, n, iterationLimit)
	}
	return nil
}

// pbkdf2Key is PBKDF2 (RFC 8018 §5.2) with HMAC over h, on a []byte
// password, which crypto/pbkdf2 takes as an (unclearable) string. HMAC's
// keyed inner and outer hash states are computed once and restored for
// each iteration, which halves the hashing of the plain construction.
func pbkdf2Key(h func() hash.Hash, password, salt []byte, iter, keyLen int) []byte {
	inner, outer := h(), h()
	im, ok1 := inner.(encoding.BinaryMarshaler)
	om, ok2 := outer.(encoding.BinaryMarshaler)
	iu, ok3 := inner.(encoding.BinaryUnmarshaler)
	ou, ok4 := outer.(encoding.BinaryUnmarshaler)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return pbkdf2HMAC(h, password, salt, iter, keyLen)
	}
	bs := inner.BlockSize()
	key := password
	if len(key) > bs {
		kh := h()
		kh.Write(key)
		key = kh.Sum(nil)
		defer clear(key)
	}
	pad := make([]byte, bs)
	copy(pad, key)
	for i := range pad {
		pad[i] ^= 0x36
	}
	inner.Write(pad)
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	outer.Write(pad)
	clear(pad)
	iState, err1 := im.MarshalBinary()
	oState, err2 := om.MarshalBinary()
	defer clear(iState)
	defer clear(oState)
	if err1 != nil || err2 != nil {
		return pbkdf2HMAC(h, password, salt, iter, keyLen)
	}
	hLen := inner.Size()
	sum := make([]byte, 0, hLen)
	// mac computes HMAC(key, msg) into u[:0].
	mac := func(u []byte, msg ...[]byte) []byte {
		_ = iu.UnmarshalBinary(iState)
		for _, m := range msg {
			inner.Write(m)
		}
		sum = inner.Sum(sum[:0])
		_ = ou.UnmarshalBinary(oState)
		outer.Write(sum)
		return outer.Sum(u[:0])
	}
	out := make([]byte, 0, (keyLen+hLen-1)/hLen*hLen)
	u := make([]byte, 0, hLen)
	t := make([]byte, hLen)
	var ctr [4]byte
	for block := uint32(1); len(out) < keyLen; block++ {
		binary.BigEndian.PutUint32(ctr[:], block)
		u = mac(u, salt, ctr[:])
		copy(t, u)
		for range iter - 1 {
			u = mac(u, u)
			subtle.XORBytes(t, t, u)
		}
		out = append(out, t...)
	}
	clear(t)
	clear(u)
	clear(sum)
	return out[:keyLen]
}

// pbkdf2HMAC is PBKDF2 with crypto/hmac, for hashes that cannot save their
// state.
func pbkdf2HMAC(h func() hash.Hash, password, salt []byte, iter, keyLen int) []byte {
	prf := hmac.New(h, password)
	hLen := prf.Size()
	out := make([]byte, 0, (keyLen+hLen-1)/hLen*hLen)
	u := make([]byte, 0, hLen)
	t := make([]byte, hLen)
	var ctr [4]byte
	for block := uint32(1); len(out) < keyLen; block++ {
		prf.Reset()
		prf.Write(salt)
		binary.BigEndian.PutUint32(ctr[:], block)
		prf.Write(ctr[:])
		u = prf.Sum(u[:0])
		copy(t, u)
		for range iter - 1 {
			prf.Reset()
			prf.Write(u)
			u = prf.Sum(u[:0])
			subtle.XORBytes(t, t, u)
		}
		out = append(out, t...)
	}
	clear(t)
	clear(u)
	return out[:keyLen]
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
	d := repeatByte(id, v)
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
		return nil, 0, fmt.Errorf("%w: PBMAC1 MAC (JDK 26 / OpenSSL 3.4); JDK 17 cannot read it either", ErrUnsupported)
	}
	return nil, 0, fmt.Errorf("%w: MAC digest %v", ErrUnsupported, oid)
}

// pkcs12MAC computes PKCS #12's HMAC over content with a key derived by
// pkcs12KDF.
func pkcs12MAC(h func() hash.Hash, v int, password, salt []byte, iter int, content []byte) []byte {
	bmp := bmpPassword(password)
	defer clear(bmp)
	key := pkcs12KDF(h, v, salt, bmp, iter, 3, h().Size())
	defer clear(key)
	m := hmac.New(h, key)
	m.Write(content)
	return m.Sum(nil)
}
