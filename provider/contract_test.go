package provider_test

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

func TestUnsupported(t *testing.T) {
	err := error(provider.Unsupported("ip", "this ACME CA certifies DNS names only"))
	assert.ErrorIs(t, err, provider.ErrInvalidRequest)
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	var re *provider.RequestError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "ip", re.Field)
	assert.Equal(t, "provider: invalid request: ip: this ACME CA certifies DNS names only: unsupported operation", err.Error())
}

func TestRetryLaterError(t *testing.T) {
	errACME := errors.New("acme: urn:ietf:params:acme:error:rateLimited")
	at := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		err  *provider.RetryLaterError
		msg  string
	}{
		{name: "with time and cause", err: &provider.RetryLaterError{After: at, Err: errACME}, msg: "provider: CA asks to retry after 2026-12-03T15:00:00Z: acme: urn:ietf:params:acme:error:rateLimited"},
		{name: "bare", err: &provider.RetryLaterError{}, msg: "provider: CA asks to retry later"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error = tc.err
			assert.ErrorIs(t, err, provider.ErrRetryLater)
			assert.NotErrorIs(t, err, provider.ErrInvalidRequest, "a retry is not a refusal")
			assert.Equal(t, tc.msg, err.Error())
			if tc.err.Err != nil {
				assert.ErrorIs(t, err, errACME)
			}
			var rl *provider.RetryLaterError
			require.ErrorAs(t, err, &rl)
			assert.Equal(t, tc.err.After, rl.After)
		})
	}
}

func TestRevokeRequestSerialNumber(t *testing.T) {
	pki := newTestPKI(t)
	cert := pki.leaf(t, nil, "h1.test").Leaf
	tests := []struct {
		name  string
		req   *provider.RevokeRequest
		want  *big.Int
		field string
	}{
		{name: "serial", req: &provider.RevokeRequest{Serial: big.NewInt(7)}, want: big.NewInt(7)},
		{name: "certificate", req: &provider.RevokeRequest{Certificate: cert}, want: cert.SerialNumber},
		{name: "both agree", req: &provider.RevokeRequest{Serial: new(big.Int).Set(cert.SerialNumber), Certificate: cert}, want: cert.SerialNumber},
		{name: "both disagree", req: &provider.RevokeRequest{Serial: big.NewInt(7), Certificate: cert}, field: "serial"},
		{name: "neither", req: &provider.RevokeRequest{}, field: "serial"},
		{name: "certificate without serial", req: &provider.RevokeRequest{Certificate: &x509.Certificate{}}, field: "certificate"},
		{name: "nil", field: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.req.SerialNumber()
			if tc.want != nil {
				require.NoError(t, err)
				assert.Zero(t, tc.want.Cmp(got))
				return
			}
			assert.Nil(t, got)
			assertRequestError(t, err, tc.field)
		})
	}
}

// sourceProvider fetches its CRLs, and can sign too: CRLs must prefer the
// published ones.
type sourceProvider struct {
	capableProvider
	crls []*x509.RevocationList
}

var _ provider.CRLSource = (*sourceProvider)(nil)

func (p *sourceProvider) CRLs(context.Context) ([]*x509.RevocationList, error) {
	p.calls = append(p.calls, "CRLs")
	return p.crls, nil
}

func TestCRLsPrefersSource(t *testing.T) {
	want := []*x509.RevocationList{{Number: big.NewInt(3)}}
	p := &sourceProvider{capableProvider: capableProvider{staticProvider: staticProvider{name: "acme"}}, crls: want}
	got, err := provider.CRLs(context.Background(), p)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Equal(t, []string{"CRLs"}, p.calls, "a CRL source is asked, never the signer")
}
