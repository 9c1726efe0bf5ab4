package provider_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// capableProvider has every optional capability; each records its call and
// answers with errCapable, so the tests can tell that the package function
// reached it.
type capableProvider struct {
	staticProvider
	calls []string
}

var errCapable = errors.New("capable provider reached")

var (
	_ provider.CRLSigner    = (*capableProvider)(nil)
	_ provider.PeerVerifier = (*capableProvider)(nil)
	_ provider.Renewer      = (*capableProvider)(nil)
	_ provider.Inventory    = (*capableProvider)(nil)
)

func (p *capableProvider) SignCRL(context.Context) (*x509.RevocationList, error) {
	p.calls = append(p.calls, "SignCRL")
	return nil, errCapable
}

func (p *capableProvider) VerifyPeer(context.Context, *provider.VerifyRequest) error {
	p.calls = append(p.calls, "VerifyPeer")
	return errCapable
}

func (p *capableProvider) Renew(context.Context, *provider.RenewRequest) (*provider.IssueResult, error) {
	p.calls = append(p.calls, "Renew")
	return nil, errCapable
}

func (p *capableProvider) LookupCertificate(context.Context, *big.Int) (*provider.CertificateRecord, error) {
	p.calls = append(p.calls, "LookupCertificate")
	return nil, errCapable
}

func (p *capableProvider) ListCertificates(context.Context, *provider.ListOptions) ([]*provider.CertificateRecord, error) {
	p.calls = append(p.calls, "ListCertificates")
	return nil, errCapable
}

// capabilities calls each capability function of package provider.
var capabilities = []struct {
	name       string
	capability string // as named in the error message
	call       func(provider.Provider) error
}{
	{name: "SignCRL", capability: "CRL signing", call: func(p provider.Provider) error {
		_, err := provider.SignCRL(context.Background(), p)
		return err
	}},
	{name: "CRLs", capability: "CRLs", call: func(p provider.Provider) error {
		_, err := provider.CRLs(context.Background(), p)
		return err
	}},
	{name: "VerifyPeer", capability: "peer verification", call: func(p provider.Provider) error {
		return provider.VerifyPeer(context.Background(), p, &provider.VerifyRequest{})
	}},
	{name: "Renew", capability: "renewal", call: func(p provider.Provider) error {
		_, err := provider.Renew(context.Background(), p, &provider.RenewRequest{})
		return err
	}},
	{name: "LookupCertificate", capability: "an inventory", call: func(p provider.Provider) error {
		_, err := provider.LookupCertificate(context.Background(), p, big.NewInt(1))
		return err
	}},
	{name: "ListCertificates", capability: "an inventory", call: func(p provider.Provider) error {
		_, err := provider.ListCertificates(context.Background(), p, nil)
		return err
	}},
}

func TestCapabilityUnsupported(t *testing.T) {
	p := &staticProvider{name: "acme"}
	for _, tc := range capabilities {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(p)
			require.Error(t, err)
			assert.ErrorIs(t, err, errors.ErrUnsupported)
			assert.Equal(t, "provider: acme does not support "+tc.capability+": unsupported operation", err.Error())
		})
	}
}

func TestCapabilitySupported(t *testing.T) {
	for _, tc := range capabilities {
		t.Run(tc.name, func(t *testing.T) {
			p := &capableProvider{staticProvider: staticProvider{name: "root"}}
			err := tc.call(p)
			assert.ErrorIs(t, err, errCapable)
			assert.NotErrorIs(t, err, errors.ErrUnsupported)
			want := tc.name
			if tc.name == "CRLs" {
				want = "SignCRL" // CRLs falls back on the CRL signer
			}
			assert.Equal(t, []string{want}, p.calls)
		})
	}
}

func TestEncodeCertificates(t *testing.T) {
	pki := newTestPKI(t)
	leaf := pki.leaf(t, nil, "h1.test").Leaf
	tests := []struct {
		name  string
		certs []*x509.Certificate
	}{
		{name: "none"},
		{name: "one", certs: []*x509.Certificate{pki.cert}},
		{name: "two", certs: []*x509.Certificate{leaf, pki.cert}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := provider.EncodeCertificates(tc.certs...)
			assert.Equal(t, tc.certs, parsePEMCertificates(t, out))
		})
	}
}

func TestCABundle(t *testing.T) {
	pki := newTestPKI(t)
	other := newTestPKI(t)
	errStore := errors.New("store unavailable")
	tests := []struct {
		name  string
		p     *staticProvider
		msg   string // non-empty when an error is expected
		cause error
	}{
		{name: "single root", p: &staticProvider{name: "root", certs: []*x509.Certificate{pki.cert}}},
		{name: "rollover", p: &staticProvider{name: "root", certs: []*x509.Certificate{pki.cert, other.cert}}},
		{name: "empty", p: &staticProvider{name: "root"}, msg: "provider: root returned no CA certificates"},
		{name: "provider error", p: &staticProvider{name: "root", err: errStore}, msg: "store unavailable", cause: errStore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bundle, err := provider.CABundle(context.Background(), tc.p)
			if tc.msg != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.msg)
				if tc.cause != nil {
					assert.ErrorIs(t, err, tc.cause)
				}
				assert.Nil(t, bundle)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.p.certs, parsePEMCertificates(t, bundle))
			// The bundle loads into a pool as libvirt and QEMU read it.
			pool := x509.NewCertPool()
			assert.True(t, pool.AppendCertsFromPEM(bundle))
		})
	}
}

// parsePEMCertificates parses data as PEM "CERTIFICATE" blocks and nothing
// else.
func parsePEMCertificates(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for len(data) > 0 {
		var block *pem.Block
		block, data = pem.Decode(data)
		require.NotNil(t, block, "trailing bytes that are not PEM")
		require.Equal(t, "CERTIFICATE", block.Type)
		assert.Empty(t, block.Headers)
		cert, err := x509.ParseCertificate(block.Bytes)
		require.NoError(t, err)
		certs = append(certs, cert)
	}
	return certs
}
