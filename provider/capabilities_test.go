package provider_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// minimal implements the core interface only.
type minimal struct{ provider.Provider }

func (minimal) Name() string { return "minimal" }

// notifying is a provider with revocation notices.
type notifying struct {
	minimal
	ch chan struct{}
}

func (n notifying) NotifyRevocations(ctx context.Context) <-chan struct{} { return n.ch }

// TestOptionalCapabilitiesUnsupported: the package functions of the
// revocation-notice and OCSP-signing capabilities give an error matching
// errors.ErrUnsupported, naming the provider, when it lacks them.
func TestOptionalCapabilitiesUnsupported(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"NotifyRevocations", func() error { _, err := provider.NotifyRevocations(ctx, minimal{}); return err }},
		{"SignOCSPResponse", func() error { _, err := provider.SignOCSPResponse(ctx, minimal{}, validTemplate()); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			require.ErrorIs(t, err, errors.ErrUnsupported)
			assert.Contains(t, err.Error(), "minimal")
		})
	}
	t.Run("NotifyRevocations delegates", func(t *testing.T) {
		n := notifying{ch: make(chan struct{}, 1)}
		ch, err := provider.NotifyRevocations(ctx, n)
		require.NoError(t, err)
		assert.Equal(t, (<-chan struct{})(n.ch), ch)
	})
}

func validTemplate() *provider.OCSPResponseTemplate {
	now := time.Now()
	return &provider.OCSPResponseTemplate{
		Issuer:       &x509.Certificate{Raw: []byte{0x30, 0}},
		SerialNumber: big.NewInt(1),
		ThisUpdate:   now,
		NextUpdate:   now.Add(time.Hour),
	}
}

// signing records the template it was asked to sign.
type signing struct {
	minimal
	got *provider.OCSPResponseTemplate
}

func (s *signing) SignOCSPResponse(_ context.Context, tmpl *provider.OCSPResponseTemplate) ([]byte, error) {
	s.got = tmpl
	return []byte("signed"), nil
}

// TestOCSPResponseTemplateValidate: SignOCSPResponse refuses an
// incomplete or inconsistent template with a *RequestError naming the
// field, before the provider sees it.
func TestOCSPResponseTemplateValidate(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name  string
		edit  func(*provider.OCSPResponseTemplate)
		field string // "" when valid
	}{
		{"good", func(*provider.OCSPResponseTemplate) {}, ""},
		{"no NextUpdate", func(t *provider.OCSPResponseTemplate) { t.NextUpdate = time.Time{} }, ""},
		{"revoked", func(t *provider.OCSPResponseTemplate) {
			t.Status, t.RevokedAt, t.Reason = provider.OCSPRevoked, now, provider.ReasonSuperseded
		}, ""},
		{"unknown", func(t *provider.OCSPResponseTemplate) { t.Status = provider.OCSPUnknown }, ""},
		{"SHA-256 CertID", func(t *provider.OCSPResponseTemplate) { t.IssuerHash = crypto.SHA256 }, ""},
		{"no issuer", func(t *provider.OCSPResponseTemplate) { t.Issuer = nil }, "Issuer"},
		{"unparsed issuer", func(t *provider.OCSPResponseTemplate) { t.Issuer = &x509.Certificate{} }, "Issuer"},
		{"no serial", func(t *provider.OCSPResponseTemplate) { t.SerialNumber = nil }, "SerialNumber"},
		{"negative serial", func(t *provider.OCSPResponseTemplate) { t.SerialNumber = big.NewInt(-1) }, "SerialNumber"},
		{"unlinked hash", func(t *provider.OCSPResponseTemplate) { t.IssuerHash = crypto.MD4 }, "IssuerHash"},
		{"bad status", func(t *provider.OCSPResponseTemplate) { t.Status = -1 }, "Status"},
		{"no ThisUpdate", func(t *provider.OCSPResponseTemplate) { t.ThisUpdate = time.Time{} }, "ThisUpdate"},
		{"NextUpdate not after", func(t *provider.OCSPResponseTemplate) { t.NextUpdate = t.ThisUpdate }, "NextUpdate"},
		{"revoked without time", func(t *provider.OCSPResponseTemplate) { t.Status = provider.OCSPRevoked }, "RevokedAt"},
		{"revoked, reason 7", func(t *provider.OCSPResponseTemplate) {
			t.Status, t.RevokedAt, t.Reason = provider.OCSPRevoked, now, 7
		}, "Reason"},
		{"revoked, removeFromCRL", func(t *provider.OCSPResponseTemplate) {
			t.Status, t.RevokedAt, t.Reason = provider.OCSPRevoked, now, provider.ReasonRemoveFromCRL
		}, "Reason"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := validTemplate()
			tc.edit(tmpl)
			p := &signing{}
			der, err := provider.SignOCSPResponse(context.Background(), p, tmpl)
			if tc.field == "" {
				require.NoError(t, err)
				assert.Equal(t, []byte("signed"), der)
				assert.Same(t, tmpl, p.got)
				return
			}
			require.ErrorIs(t, err, provider.ErrInvalidRequest)
			var re *provider.RequestError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, tc.field, re.Field)
			assert.Nil(t, p.got, "the provider saw a refused template")
		})
	}
	t.Run("nil template", func(t *testing.T) {
		var tmpl *provider.OCSPResponseTemplate
		require.ErrorIs(t, tmpl.Validate(), provider.ErrInvalidRequest)
	})
}

func TestOCSPStatusString(t *testing.T) {
	for s, want := range map[provider.OCSPStatus]string{provider.OCSPGood: "good", provider.OCSPRevoked: "revoked", provider.OCSPUnknown: "unknown", 9: "OCSPStatus(9)"} {
		assert.Equal(t, want, s.String())
	}
}
