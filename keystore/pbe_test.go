package keystore

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKDF checks the parse's key derivation: PBKDF2 agrees with
// crypto/pbkdf2, equal parameters derive once, and the budget counts
// iterations times blocks across every derivation.
func TestKDF(t *testing.T) {
	// A tenth of the budget keeps the test short under the race detector.
	kdfBudget = MaxKDFIterations / 10
	t.Cleanup(func() { kdfBudget = MaxKDFIterations })
	salt := []byte("saltsaltsaltsalt")
	t.Run("PBKDF2 matches crypto/pbkdf2", func(t *testing.T) {
		k := newKDF([]byte("password"))
		defer k.close()
		got, err := k.pbkdf2(oidHMACWithSHA1, sha1.New, salt, 1000, 32)
		require.NoError(t, err)
		want, err := pbkdf2.Key(sha1.New, "password", salt, 1000, 32)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
	tests := []struct {
		name        string
		run         func(k *kdf) error
		wantDerived int
		wantLeft    int
		wantErr     error
	}{
		{name: "same parameters derive once", run: func(k *kdf) error {
			for range 5 {
				if _, err := k.pbkdf2(oidHMACWithSHA256, sha256.New, salt, 1000, 32); err != nil {
					return err
				}
			}
			return nil
		}, wantDerived: 1, wantLeft: kdfBudget - 1000},
		{name: "another salt derives again", run: func(k *kdf) error {
			if _, err := k.pbkdf2(oidHMACWithSHA256, sha256.New, salt, 1000, 32); err != nil {
				return err
			}
			_, err := k.pbkdf2(oidHMACWithSHA256, sha256.New, []byte("other salt"), 1000, 32)
			return err
		}, wantDerived: 2, wantLeft: kdfBudget - 2000},
		{name: "blocks count: 3DES key of two SHA-1 blocks", run: func(k *kdf) error {
			_, err := k.pkcs12(oidSHA1, sha1.New, 64, salt, 1000, 1, 24)
			return err
		}, wantDerived: 1, wantLeft: kdfBudget - 2000},
		{name: "budget exhausted", run: func(k *kdf) error {
			for i := range 20 {
				if _, err := k.pbkdf2(oidHMACWithSHA256, sha256.New, []byte{byte(i)}, kdfBudget/8, 32); err != nil {
					return err
				}
			}
			return nil
		}, wantDerived: 8, wantLeft: 0, wantErr: ErrWorkLimit},
		{name: "one derivation over the budget", run: func(k *kdf) error {
			_, err := k.pbkdf2(oidHMACWithSHA256, sha256.New, salt, kdfBudget+1, 32)
			return err
		}, wantDerived: 0, wantLeft: kdfBudget, wantErr: ErrWorkLimit},
		{name: "zero iterations", run: func(k *kdf) error {
			_, err := k.pbkdf2(oidHMACWithSHA256, sha256.New, salt, 0, 32)
			return err
		}, wantDerived: 0, wantLeft: kdfBudget, wantErr: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := newKDF([]byte("password"))
			defer k.close()
			err := tc.run(k)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
			} else {
				assert.NoError(t, err)
			}
			assert.Equal(t, tc.wantDerived, k.derived)
			assert.Equal(t, tc.wantLeft, k.left)
		})
	}
}
