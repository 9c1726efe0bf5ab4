package providertest

import (
	"context"
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

// testNotifier checks provider.RevocationNotifier, if implemented: a
// notice follows a revocation, a subscriber that never reads does not
// block the provider, and a done context closes the channel.
func (s *suite) testNotifier(t *testing.T, p provider.Provider) {
	n, ok := p.(provider.RevocationNotifier)
	if !ok {
		t.Skip("provider does not implement provider.RevocationNotifier")
	}
	s.run(t, "NoticeAfterRevoke", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		ch := n.NotifyRevocations(ctx)
		_ = n.NotifyRevocations(ctx) // never read: must not block Revoke
		for range 2 {
			c := s.issue(t, p, s.anyRole(), nil).cert()
			done := make(chan error, 1)
			go func() {
				done <- p.Revoke(ctx, &provider.RevokeRequest{Serial: c.SerialNumber, Certificate: c, Reason: provider.ReasonSuperseded})
			}()
			select {
			case err := <-done:
				require.NoError(t, err, "Revoke")
			case <-time.After(time.Minute):
				t.Fatal("Revoke blocked on a subscriber that does not read its notices")
			}
		}
		select {
		case _, ok := <-ch:
			assert.True(t, ok, "channel closed instead of a notice")
		case <-time.After(10 * time.Second):
			t.Fatal("no notice within 10 s of a revocation")
		}
	})
	s.run(t, "ClosedWhenDone", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		ch := n.NotifyRevocations(ctx)
		cancel()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return
				}
			case <-deadline:
				t.Fatal("channel still open 5 s after its context was done")
			}
		}
	})
}

// testOCSPSigner checks provider.OCSPSigner, if implemented: responses
// for a leaf the provider issued verify against its issuer (directly or
// through a delegated responder certificate the issuer signed) and state
// the template; a template naming a foreign CA is refused.
func (s *suite) testOCSPSigner(t *testing.T, p provider.Provider) {
	if _, ok := p.(provider.OCSPSigner); !ok {
		t.Skip("provider does not implement provider.OCSPSigner")
	}
	ca := s.caCertificates(t, p)
	leaf := s.issue(t, p, s.anyRole(), nil).cert()
	issuer := ca.issuerOf(t, leaf)
	now := time.Now().Truncate(time.Second)
	sign := func(t *testing.T, tmpl provider.OCSPResponseTemplate) *ocsp.Response {
		t.Helper()
		tmpl.Issuer, tmpl.SerialNumber = issuer, leaf.SerialNumber
		tmpl.ThisUpdate, tmpl.NextUpdate = now, now.Add(time.Hour)
		der, err := provider.SignOCSPResponse(t.Context(), p, &tmpl)
		require.NoError(t, err, "SignOCSPResponse")
		resp, err := ocsp.ParseResponseForCert(der, leaf, issuer)
		require.NoError(t, err, "the response does not verify against the leaf's issuer")
		assert.Equal(t, 0, leaf.SerialNumber.Cmp(resp.SerialNumber), "SerialNumber")
		assert.True(t, now.Equal(resp.ThisUpdate), "ThisUpdate %v, want %v", resp.ThisUpdate, now)
		assert.True(t, now.Add(time.Hour).Equal(resp.NextUpdate), "NextUpdate %v", resp.NextUpdate)
		return resp
	}
	s.run(t, "Good", func(t *testing.T) {
		assert.Equal(t, ocsp.Good, sign(t, provider.OCSPResponseTemplate{Status: provider.OCSPGood}).Status)
	})
	s.run(t, "Revoked", func(t *testing.T) {
		at := now.Add(-time.Minute)
		resp := sign(t, provider.OCSPResponseTemplate{Status: provider.OCSPRevoked, RevokedAt: at, Reason: provider.ReasonKeyCompromise})
		assert.Equal(t, ocsp.Revoked, resp.Status)
		assert.True(t, at.Equal(resp.RevokedAt), "RevokedAt %v, want %v", resp.RevokedAt, at)
		assert.Equal(t, ocsp.KeyCompromise, resp.RevocationReason)
	})
	s.run(t, "Unknown", func(t *testing.T) {
		assert.Equal(t, ocsp.Unknown, sign(t, provider.OCSPResponseTemplate{Status: provider.OCSPUnknown}).Status)
	})
	s.run(t, "ForeignIssuer", func(t *testing.T) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "providertest foreign CA"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		require.NoError(t, err)
		foreign, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		_, err = provider.SignOCSPResponse(t.Context(), p, &provider.OCSPResponseTemplate{
			Issuer: foreign, SerialNumber: leaf.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(time.Hour)})
		assert.ErrorIs(t, err, provider.ErrInvalidRequest, "a template naming another CA")
	})
}
