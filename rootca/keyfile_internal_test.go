package rootca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var updateKeySeeds = flag.Bool("update-key-seeds", false, "rewrite the stored-key seeds in testdata/key")

const keySeedDir = "testdata/key"

var keyTestPassword = []byte("correct horse battery staple")

// cheapKey returns a stored key block as encryptKey writes it, with the
// minimum iteration count so that tests stay fast.
func cheapKey(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	block, err := encryptKeyIterations(rand.Reader, k, keyTestPassword, minKeyIterations)
	require.NoError(t, err)
	return block
}

// mutateKey decodes a stored key block, lets f change it, and encodes it
// again.
func mutateKey(t testing.TB, block []byte, f func(*encryptedKeyInfo)) []byte {
	t.Helper()
	p, _ := pem.Decode(block)
	require.NotNil(t, p)
	var info encryptedKeyInfo
	_, err := asn1.Unmarshal(p.Bytes, &info)
	require.NoError(t, err)
	f(&info)
	der, err := asn1.Marshal(info)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: encryptedKeyBlock, Bytes: der})
}

// malformedKeys are stored key blocks decryptKey must refuse with a
// *StoredKeyError, before deriving a key.
func malformedKeys(t testing.TB) map[string][]byte {
	good := cheapKey(t)
	m := func(f func(*encryptedKeyInfo)) []byte { return mutateKey(t, good, f) }
	return map[string][]byte{
		// The reproducer of issue 11, item 6: cipher.NewCBCDecrypter
		// panicked on an IV shorter than the block.
		"iv-3-bytes":      m(func(i *encryptedKeyInfo) { i.Algorithm.Params.Enc.IV = []byte{1, 2, 3} }),
		"iv-empty":        m(func(i *encryptedKeyInfo) { i.Algorithm.Params.Enc.IV = nil }),
		"iv-32-bytes":     m(func(i *encryptedKeyInfo) { i.Algorithm.Params.Enc.IV = make([]byte, 32) }),
		"ciphertext-odd":  m(func(i *encryptedKeyInfo) { i.Data = i.Data[:len(i.Data)-3] }),
		"ciphertext-none": m(func(i *encryptedKeyInfo) { i.Data = nil }),
		"ciphertext-huge": m(func(i *encryptedKeyInfo) { i.Data = make([]byte, maxKeyCiphertext+16) }),
		"iterations-huge": m(func(i *encryptedKeyInfo) { i.Algorithm.Params.KDF.Params.Iterations = 1 << 40 }),
		"iterations-zero": m(func(i *encryptedKeyInfo) { i.Algorithm.Params.KDF.Params.Iterations = 0 }),
		"iterations-neg":  m(func(i *encryptedKeyInfo) { i.Algorithm.Params.KDF.Params.Iterations = -5 }),
		"salt-short":      m(func(i *encryptedKeyInfo) { i.Algorithm.Params.KDF.Params.Salt = []byte{1} }),
		"salt-huge":       m(func(i *encryptedKeyInfo) { i.Algorithm.Params.KDF.Params.Salt = make([]byte, 1<<12) }),
		"key-length-16":   m(func(i *encryptedKeyInfo) { i.Algorithm.Params.KDF.Params.KeyLength = 16 }),
		"prf-sha1": m(func(i *encryptedKeyInfo) {
			i.Algorithm.Params.KDF.Params.PRF.Algorithm = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
		}),
		"prf-absent": m(func(i *encryptedKeyInfo) { i.Algorithm.Params.KDF.Params.PRF = pkix.AlgorithmIdentifier{} }),
		"cipher-des": m(func(i *encryptedKeyInfo) {
			i.Algorithm.Params.Enc.Algorithm = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}
		}),
		"cipher-aes128": m(func(i *encryptedKeyInfo) {
			i.Algorithm.Params.Enc.Algorithm = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
		}),
		"kdf-unknown": m(func(i *encryptedKeyInfo) { i.Algorithm.Params.KDF.Algorithm = asn1.ObjectIdentifier{1, 2, 3} }),
		"scheme-pbes1": m(func(i *encryptedKeyInfo) {
			i.Algorithm.Algorithm = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 3}
		}),
		"not-asn1":   pem.EncodeToMemory(&pem.Block{Type: encryptedKeyBlock, Bytes: []byte("garbage")}),
		"wrong-type": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0}}),
		"not-pem":    []byte("not a key"),
		"empty":      nil,
	}
}

// TestDecryptKeyMalformed is issue 11, item 6: a stored key with bad PBES2
// parameters is a *StoredKeyError, never a panic.
func TestDecryptKeyMalformed(t *testing.T) {
	for name, block := range malformedKeys(t) {
		t.Run(name, func(t *testing.T) {
			var signer any
			var err error
			require.NotPanics(t, func() { signer, err = decryptKey(block, keyTestPassword) })
			assert.Nil(t, signer)
			var ske *StoredKeyError
			assert.True(t, errors.As(err, &ske), "error %v is not a *StoredKeyError", err)
			assert.NotErrorIs(t, err, ErrIncorrectPassword)
		})
	}
}

func TestDecryptKey(t *testing.T) {
	good := cheapKey(t)
	tests := []struct {
		name     string
		block    []byte
		password []byte
		wantErr  error
	}{
		{name: "good", block: good, password: keyTestPassword},
		{name: "wrong password", block: good, password: []byte("wrong"), wantErr: ErrIncorrectPassword},
		// The first block, which holds the DER header: flipping the last
		// byte failed one run in 256, when the garbled last block ended in
		// valid padding and only the public key bits (which Go's parser
		// derives again, ignoring them) were hit.
		{name: "flipped ciphertext", block: mutateKey(t, good, func(i *encryptedKeyInfo) { i.Data[0] ^= 0xff }),
			password: keyTestPassword, wantErr: ErrIncorrectPassword},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := decryptKey(tc.block, tc.password)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.NotNil(t, k)
		})
	}
}

// TestKeySeeds writes the fuzzing seeds of FuzzDecryptKey with
// -update-key-seeds, and otherwise checks that each seed meets the fate
// its name gives: good-* decrypt, bad-* are refused.
func TestKeySeeds(t *testing.T) {
	if *updateKeySeeds {
		require.NoError(t, os.MkdirAll(keySeedDir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(keySeedDir, "good-p256.pem"), cheapKey(t), 0o644))
		for name, block := range malformedKeys(t) {
			require.NoError(t, os.WriteFile(filepath.Join(keySeedDir, "bad-"+name+".pem"), block, 0o644))
		}
	}
	files, err := filepath.Glob(filepath.Join(keySeedDir, "*"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no seeds: run go test ./rootca -run TestKeySeeds -update-key-seeds")
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			_, err = decryptKey(data, keyTestPassword)
			if len(name) > 5 && name[:5] == "good-" {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

// FuzzDecryptKey feeds arbitrary stored key blocks to decryptKey. It must
// never panic, and must refuse with a *StoredKeyError or
// ErrIncorrectPassword. Iteration counts above 10,000 are left out to
// keep the fuzzer fast; the bound itself is TestDecryptKeyMalformed's.
func FuzzDecryptKey(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(keySeedDir, "*"))
	require.NoError(f, err)
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if info, err := parseEncryptedKey(data); err == nil && info.Algorithm.Params.KDF.Params.Iterations > 10_000 {
			return
		}
		k, err := decryptKey(data, keyTestPassword)
		if err != nil {
			var ske *StoredKeyError
			require.True(t, errors.As(err, &ske) || errors.Is(err, ErrIncorrectPassword), "unexpected error %v", err)
			require.Nil(t, k)
			return
		}
		require.NotNil(t, k)
	})
}

// TestOpenMalformedStoredKey is the reproducer of issue 11, item 6, end to
// end: a CA key with a 3-byte IV written into the store made Open panic in
// cipher.NewCBCDecrypter, crashing every server sharing the database. Open
// now fails with a *StoredKeyError.
func TestOpenMalformedStoredKey(t *testing.T) {
	cert, _, err := NewRoot(nil)
	require.NoError(t, err)
	for name, block := range malformedKeys(t) {
		if len(block) == 0 {
			continue // an empty key means an external signer
		}
		t.Run(name, func(t *testing.T) {
			store := NewMemStore()
			require.NoError(t, store.CreateAuthority(t.Context(), &Authority{Certificates: [][]byte{cert.Raw}, Key: block}))
			var ca *CA
			require.NotPanics(t, func() {
				ca, err = Open(t.Context(), store, &Options{Password: func() ([]byte, error) { return keyTestPassword, nil }})
			})
			assert.Nil(t, ca)
			var ske *StoredKeyError
			assert.True(t, errors.As(err, &ske), "error %v is not a *StoredKeyError", err)
		})
	}
}
