package ocspx

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/provider"
)

func certificate(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

func TestSign(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	ca := certificate(t, caTmpl, caTmpl, caKey.Public(), caKey)
	respKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	delegated := certificate(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "ocsp"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}},
		ca, respKey.Public(), caKey)

	tests := []struct {
		name      string
		tmpl      provider.OCSPResponseTemplate
		responder *x509.Certificate
		signer    crypto.Signer
	}{
		{name: "good, signed by the CA", responder: ca, signer: caKey,
			tmpl: provider.OCSPResponseTemplate{Status: provider.OCSPGood}},
		{name: "revoked with a reason", responder: ca, signer: caKey,
			tmpl: provider.OCSPResponseTemplate{Status: provider.OCSPRevoked, RevokedAt: now.Add(-time.Minute), Reason: provider.ReasonKeyCompromise}},
		{name: "unknown, SHA-256 CertID", responder: ca, signer: caKey,
			tmpl: provider.OCSPResponseTemplate{Status: provider.OCSPUnknown, IssuerHash: crypto.SHA256}},
		{name: "delegated responder", responder: delegated, signer: respKey,
			tmpl: provider.OCSPResponseTemplate{Status: provider.OCSPGood}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := tc.tmpl
			tmpl.Issuer, tmpl.SerialNumber = ca, big.NewInt(0xbeef)
			tmpl.ThisUpdate, tmpl.NextUpdate = now, now.Add(time.Hour)
			require.NoError(t, tmpl.Validate())
			der, err := Sign(&tmpl, tc.responder, tc.signer, 0)
			require.NoError(t, err)
			resp, err := ocsp.ParseResponse(der, ca) // checks the signature, and a delegated responder's chain
			require.NoError(t, err)
			assert.Equal(t, int(tmpl.Status), resp.Status)
			assert.Equal(t, 0, resp.SerialNumber.Cmp(tmpl.SerialNumber))
			assert.True(t, resp.ThisUpdate.Equal(now))
			assert.True(t, resp.NextUpdate.Equal(now.Add(time.Hour)))
			wantHash := tmpl.IssuerHash
			if wantHash == 0 {
				wantHash = crypto.SHA1
			}
			assert.Equal(t, wantHash, resp.IssuerHash)
			if tmpl.Status == provider.OCSPRevoked {
				assert.True(t, resp.RevokedAt.Equal(tmpl.RevokedAt))
				assert.Equal(t, int(tmpl.Reason), resp.RevocationReason)
			}
			if tc.responder == ca {
				assert.Nil(t, resp.Certificate, "the CA signs for itself: no certificate in the response")
			} else {
				require.NotNil(t, resp.Certificate)
				assert.True(t, resp.Certificate.Equal(delegated))
			}
		})
	}
}
