package pkicore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func selfSigned(t *testing.T, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

func TestVerifyReason(t *testing.T) {
	now := time.Now()
	ca := selfSigned(t, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		DNSNames: []string{"ca.example"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	verify := func(o x509.VerifyOptions) error { _, err := ca.Verify(o); return err }
	tests := []struct {
		name string
		err  error
		want error
	}{
		{name: "unknown authority", err: verify(x509.VerifyOptions{Roots: x509.NewCertPool()}), want: ErrUnknownAuthority},
		{name: "expired", err: verify(x509.VerifyOptions{Roots: pool, CurrentTime: now.Add(2 * time.Hour)}), want: ErrExpired},
		{name: "usage", err: verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}), want: ErrIncompatibleUsage},
		{name: "name", err: verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example"}), want: ErrNameMismatch},
		{name: "other", err: errors.New("boom"), want: ErrUnknownAuthority},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Error(t, tc.err)
			got := VerifyReason(tc.err)
			assert.ErrorIs(t, got, tc.want)
			assert.ErrorIs(t, got, tc.err, "the original error stays visible")
		})
	}
	assert.NoError(t, VerifyReason(nil))
}
