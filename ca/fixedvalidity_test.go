package ca_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

// acmeLike is the built-in CA seen the way an ACME CA behaves: it
// decides the validity itself (refusing any IssueRequest.Validity, and a
// MaxValidity its own validity exceeds), revokes by certificate only and
// has no inventory (bare hides it). It certifies exactly a CSR's names.
type acmeLike struct {
	bare
	validity time.Duration // the CA's own validity

	mu   sync.Mutex
	seen []provider.IssueRequest
}

func (a *acmeLike) Name() string { return "acme" }

func (a *acmeLike) Issue(ctx context.Context, req *provider.IssueRequest) (*provider.IssueResult, error) {
	a.mu.Lock()
	a.seen = append(a.seen, *req)
	a.mu.Unlock()
	switch {
	case req.Validity != 0:
		return nil, provider.Unsupported("validity", "the CA decides the validity")
	case req.MaxValidity != 0 && req.MaxValidity < a.validity:
		return nil, provider.Unsupported("max validity", "the CA's validity is longer")
	}
	if req.CSR != nil {
		csr, err := provider.ParseCSR(req.CSR)
		if err != nil {
			return nil, err
		}
		for _, n := range req.DNSNames {
			if !slices.Contains(csr.DNSNames, n) {
				return nil, provider.Unsupported("dns", "the CA certifies exactly the CSR's names and cannot add "+n)
			}
		}
	}
	r := *req
	r.MaxValidity = 0
	r.Validity = a.validity
	return a.bare.Issue(ctx, &r)
}

func (a *acmeLike) Revoke(ctx context.Context, req *provider.RevokeRequest) error {
	if req.Certificate == nil {
		return provider.Unsupported("certificate", "the CA revokes by certificate only")
	}
	return a.bare.Revoke(ctx, req)
}

// TestFixedValidityCA: a CA that decides the validity and revokes by
// certificate only (ACME) works through the manager: the manager asks for
// at most Settings.Validity (MaxValidity) unless the caller names a
// duration, and Revoke passes the caller's certificate.
func TestFixedValidityCA(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	acme := &acmeLike{validity: 90 * 24 * time.Hour}
	acme.bare = bare{nopClose{e.root}}
	require.NoError(t, e.reg.Register("acme", "ACME-like CA", func(context.Context) (provider.Provider, error) { return acme, nil }))
	require.NoError(t, e.m.SetProvider(ctx, "acme"))
	last := func() provider.IssueRequest {
		acme.mu.Lock()
		defer acme.mu.Unlock()
		require.NotEmpty(t, acme.seen)
		return acme.seen[len(acme.seen)-1]
	}

	t.Run("NewIdentity", func(t *testing.T) {
		id, err := e.m.NewIdentity(ctx, &ca.IdentityOptions{Hostname: "ms1.example.org"})
		require.NoError(t, err)
		req := last()
		assert.Zero(t, req.Validity, "the manager must not ask a fixed-validity CA for a validity")
		assert.Equal(t, 365*24*time.Hour, req.MaxValidity, "Settings.Validity as the upper bound")
		require.NoError(t, id.Renew(ctx), "Identity.Renew")
		assert.Zero(t, last().Validity)
	})

	var issued *provider.IssueResult
	tests := []struct {
		name     string
		validity time.Duration
		unsup    bool
	}{
		{name: "DefaultValidity"},
		{name: "NamedValidity", validity: 48 * time.Hour, unsup: true},
	}
	for _, tc := range tests {
		t.Run("Issue/"+tc.name, func(t *testing.T) {
			res, err := e.m.Issue(ctx, &ca.IssueRequest{DNSNames: []string{"kvm1.example.org"}, Validity: tc.validity})
			if tc.unsup {
				assert.ErrorIs(t, err, errors.ErrUnsupported, "a named duration is passed on as a validity, which this CA refuses")
				assert.Equal(t, tc.validity, last().Validity)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, time.Duration(0), last().Validity)
			assert.Equal(t, 365*24*time.Hour, last().MaxValidity)
			assert.InDelta(t, float64(acme.validity), float64(res.Certificate.NotAfter.Sub(res.Certificate.NotBefore)), float64(2*time.Hour))
			issued = res
		})
	}

	t.Run("Revoke", func(t *testing.T) {
		require.NotNil(t, issued)
		serial := provider.FormatSerial(issued.Certificate.SerialNumber)
		err := e.m.Revoke(ctx, &ca.RevokeRequest{Serial: serial})
		assert.ErrorIs(t, err, errors.ErrUnsupported, "without an inventory, a serial alone cannot reach this CA")
		require.NoError(t, e.m.Revoke(ctx, &ca.RevokeRequest{Certificate: issued.Certificate, Reason: provider.ReasonKeyCompromise}))
		rec, err := e.root.LookupCertificate(ctx, issued.Certificate.SerialNumber)
		require.NoError(t, err)
		assert.Equal(t, provider.StatusRevoked, rec.Status)
		other, _ := e.issue(t, provider.RoleHost, []string{"kvm2.example.org"}, nil)
		err = e.m.Revoke(ctx, &ca.RevokeRequest{Serial: serial, Certificate: other.Certificate})
		assert.ErrorIs(t, err, ca.ErrInvalidRequest, "a serial that is not the certificate's is refused")
	})
}
