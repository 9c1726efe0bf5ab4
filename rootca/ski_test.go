package rootca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSubjectKeyID checks the fast paths against the definition: RFC 7093
// method 1 over the subjectPublicKey bits of the SPKI.
func TestSubjectKeyID(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	tests := []struct {
		name string
		pub  any
	}{
		{"ecdsa", &ec.PublicKey},
		{"rsa", &rk.PublicKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spki, err := x509.MarshalPKIXPublicKey(tc.pub)
			require.NoError(t, err)
			var info struct {
				Algorithm asn1.RawValue
				PublicKey asn1.BitString
			}
			_, err = asn1.Unmarshal(spki, &info)
			require.NoError(t, err)
			want := sha256.Sum256(info.PublicKey.Bytes)
			got, err := subjectKeyID(tc.pub)
			require.NoError(t, err)
			assert.Equal(t, want[:20], got)
		})
	}
}
