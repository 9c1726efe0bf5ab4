package keystore

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPBKDF2 checks both PBKDF2 implementations against crypto/pbkdf2.
func TestPBKDF2(t *testing.T) {
	for _, tc := range []struct {
		name   string
		h      func() hash.Hash
		pw     string
		keyLen int
	}{
		{"SHA-1", sha1.New, "password", 20},
		{"SHA-256 two blocks", sha256.New, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", 48},
		{"SHA-384", sha512.New384, "pw", 32},
		{"SHA-512 long password", sha512.New, strings.Repeat("x", 200), 64},
		{"empty password", sha256.New, "", 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			salt := []byte("saltsaltsaltsalt")
			want, err := pbkdf2.Key(tc.h, tc.pw, salt, 1000, tc.keyLen)
			require.NoError(t, err)
			assert.Equal(t, want, pbkdf2Key(tc.h, []byte(tc.pw), salt, 1000, tc.keyLen))
			assert.Equal(t, want, pbkdf2HMAC(tc.h, []byte(tc.pw), salt, 1000, tc.keyLen))
		})
	}
}
