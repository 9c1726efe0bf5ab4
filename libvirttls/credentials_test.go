package libvirttls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// chainCA is a CA certificate and key for TestVerifyRevocationRule.
type chainCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// sign issues tmpl for a new key from ca (self-signed when ca is nil).
func (ca *chainCA) sign(t *testing.T, tmpl *x509.Certificate) *chainCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	parent, parentKey := tmpl, key
	if ca != nil {
		parent, parentKey = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &chainCA{cert: cert, key: key}
}

// revoke returns ca's CRL, PEM, listing serial at revokedAt, current
// from thisUpdate to nextUpdate.
func (ca *chainCA) revoke(t *testing.T, serial *big.Int, revokedAt, thisUpdate, nextUpdate time.Time) []byte {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: serial, RevocationTime: revokedAt}},
	}, ca.cert, ca.key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func certPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// TestVerifyRevocationRule checks Credentials.Verify against the shared
// revocation rule, each case one the old leaf-only, by-name check got
// wrong.
func TestVerifyRevocationRule(t *testing.T) {
	now := time.Now()
	caTmpl := func(serial int64, cn string) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	}
	root := (*chainCA)(nil).sign(t, caTmpl(1, "kvmpki root"))
	inter := root.sign(t, caTmpl(2, "kvmpki intermediate"))
	twin := (*chainCA)(nil).sign(t, caTmpl(3, "kvmpki intermediate")) // the intermediate's name, another key
	leaf := inter.sign(t, &x509.Certificate{SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: "kvm1.example.org"},
		DNSNames: []string{"kvm1.example.org"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.key)
	require.NoError(t, err)
	creds := func(crl []byte) *Credentials {
		return &Credentials{CACert: certPEM(root.cert, inter.cert, twin.cert), Cert: certPEM(leaf.cert),
			Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), CRL: crl}
	}
	past, future := now.Add(-time.Minute), now.Add(time.Minute)
	this, next := now.Add(-time.Hour), now.Add(time.Hour)
	tests := []struct {
		name string
		crl  []byte
		want error // nil: the credentials verify
	}{
		{name: "no CRL", crl: nil},
		{name: "leaf on its issuer's CRL", crl: inter.revoke(t, leaf.cert.SerialNumber, past, this, next), want: provider.ErrRevoked},
		// The old check looked at the leaf only.
		{name: "intermediate on the root's CRL", crl: root.revoke(t, inter.cert.SerialNumber, past, this, next), want: provider.ErrRevoked},
		// The old check matched the CRL to the leaf's issuer by name.
		{name: "leaf's serial on a same-name CA's CRL", crl: twin.revoke(t, leaf.cert.SerialNumber, past, this, next)},
		// The old check ignored the revocation time.
		{name: "revocation dated in the future", crl: inter.revoke(t, leaf.cert.SerialNumber, future, this, next)},
		// The old check took a CRL past its next update.
		{name: "stale CRL", crl: inter.revoke(t, big.NewInt(99), past, now.Add(-2*time.Hour), now.Add(-time.Minute)), want: ErrCredentialsInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := creds(tc.crl).Verify(now)
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, leaf.cert.SerialNumber, p.Leaf.SerialNumber)
		})
	}
}

// TestSentinelsAreShared checks that libvirttls's certificate sentinels
// are provider's values.
func TestSentinelsAreShared(t *testing.T) {
	assert.Same(t, provider.ErrRevoked, ErrRevoked)
	assert.Same(t, provider.ErrExpired, ErrExpired)
	assert.Same(t, provider.ErrUnknownAuthority, ErrUnknownAuthority)
}
