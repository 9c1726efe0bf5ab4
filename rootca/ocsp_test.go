package rootca_test

import (
	"context"
	"crypto"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// TestSignOCSPResponse: rootca signs OCSP responses with the CA key it
// holds (an external Signer here, as an HSM's), each verifying against the
// CA certificate and stating the template.
func TestSignOCSPResponse(t *testing.T) {
	for _, kind := range []string{"p256", "p384", "rsa2048"} {
		t.Run(kind, func(t *testing.T) {
			ca, _ := newCACreate(t, &rootca.CreateOptions{Options: rootca.Options{Signer: genKey(t, kind), RevocationPollInterval: -1}})
			leaf := issue(t, ca, &provider.IssueRequest{DNSNames: []string{"h.example"}, Role: provider.RoleHost}).Certificate
			now := time.Now().Truncate(time.Second).UTC()
			revokedAt := now.Add(-time.Hour)
			tests := []struct {
				name string
				tmpl provider.OCSPResponseTemplate
				want ocsp.Response
			}{
				{"good", provider.OCSPResponseTemplate{Status: provider.OCSPGood},
					ocsp.Response{Status: ocsp.Good}},
				{"revoked with reason", provider.OCSPResponseTemplate{Status: provider.OCSPRevoked, RevokedAt: revokedAt, Reason: provider.ReasonKeyCompromise},
					ocsp.Response{Status: ocsp.Revoked, RevokedAt: revokedAt, RevocationReason: ocsp.KeyCompromise}},
				{"revoked, unspecified", provider.OCSPResponseTemplate{Status: provider.OCSPRevoked, RevokedAt: revokedAt},
					ocsp.Response{Status: ocsp.Revoked, RevokedAt: revokedAt, RevocationReason: ocsp.Unspecified}},
				{"unknown", provider.OCSPResponseTemplate{Status: provider.OCSPUnknown},
					ocsp.Response{Status: ocsp.Unknown}},
				{"SHA-256 CertID", provider.OCSPResponseTemplate{Status: provider.OCSPGood, IssuerHash: crypto.SHA256},
					ocsp.Response{Status: ocsp.Good}},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					tmpl := tc.tmpl
					tmpl.Issuer, tmpl.SerialNumber = ca.Certificate(), leaf.SerialNumber
					tmpl.ThisUpdate, tmpl.NextUpdate = now, now.Add(time.Hour)
					der, err := provider.SignOCSPResponse(context.Background(), ca, &tmpl)
					require.NoError(t, err)
					resp, err := ocsp.ParseResponseForCert(der, leaf, ca.Certificate())
					require.NoError(t, err, "the response does not verify against the CA")
					assert.Equal(t, tc.want.Status, resp.Status)
					assert.Equal(t, 0, leaf.SerialNumber.Cmp(resp.SerialNumber))
					assert.True(t, tc.want.RevokedAt.Equal(resp.RevokedAt), "RevokedAt %v", resp.RevokedAt)
					assert.Equal(t, tc.want.RevocationReason, resp.RevocationReason)
					assert.True(t, now.Equal(resp.ThisUpdate))
					assert.True(t, now.Add(time.Hour).Equal(resp.NextUpdate))
					assert.Nil(t, resp.Certificate, "the CA signs itself: no responder certificate")
					want := tmpl.IssuerHash
					if want == 0 {
						want = crypto.SHA1
					}
					assert.Equal(t, want, resp.IssuerHash)
				})
			}
		})
	}
}

// TestSignOCSPResponseRefused: a template that is incomplete, or names a
// CA this provider is not, is refused with ErrInvalidRequest naming the
// field, and nothing is signed.
func TestSignOCSPResponseRefused(t *testing.T) {
	ca, _ := newCA(t, &rootca.Options{RevocationPollInterval: -1})
	other, _ := newCA(t, &rootca.Options{RevocationPollInterval: -1})
	now := time.Now()
	valid := func() *provider.OCSPResponseTemplate {
		return &provider.OCSPResponseTemplate{Issuer: ca.Certificate(), SerialNumber: big.NewInt(42), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}
	}
	tests := []struct {
		name  string
		edit  func(*provider.OCSPResponseTemplate)
		field string
	}{
		{"another CA", func(t *provider.OCSPResponseTemplate) { t.Issuer = other.Certificate() }, "Issuer"},
		{"no issuer", func(t *provider.OCSPResponseTemplate) { t.Issuer = nil }, "Issuer"},
		{"no serial", func(t *provider.OCSPResponseTemplate) { t.SerialNumber = nil }, "SerialNumber"},
		{"no ThisUpdate", func(t *provider.OCSPResponseTemplate) { t.ThisUpdate = time.Time{} }, "ThisUpdate"},
		{"NextUpdate first", func(t *provider.OCSPResponseTemplate) { t.NextUpdate = now.Add(-time.Hour) }, "NextUpdate"},
		{"bad status", func(t *provider.OCSPResponseTemplate) { t.Status = 7 }, "Status"},
		{"revoked without time", func(t *provider.OCSPResponseTemplate) { t.Status = provider.OCSPRevoked }, "RevokedAt"},
		{"removeFromCRL", func(t *provider.OCSPResponseTemplate) {
			t.Status, t.RevokedAt, t.Reason = provider.OCSPRevoked, now, provider.ReasonRemoveFromCRL
		}, "Reason"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := valid()
			tc.edit(tmpl)
			// Called directly, as well as through the package function.
			_, err := ca.SignOCSPResponse(context.Background(), tmpl)
			require.ErrorIs(t, err, provider.ErrInvalidRequest)
			var re *provider.RequestError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, tc.field, re.Field)
		})
	}
}
