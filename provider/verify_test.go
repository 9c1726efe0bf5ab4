package provider_test

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

func TestVerifyChain(t *testing.T) {
	root := newTestPKI(t)
	inter := root.sub(t)
	foreign := newTestPKI(t)
	client := root.leaf(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, "client.test").Leaf
	server := inter.leaf(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, "server.test", "192.0.2.1").Leaf
	alien := foreign.leaf(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, "client.test").Leaf
	mid := []*x509.Certificate{inter.cert}
	later := client.NotAfter.Add(time.Hour)

	tests := []struct {
		name          string
		leaf          *x509.Certificate
		intermediates []*x509.Certificate
		roots         *x509.CertPool
		opts          *provider.VerifyChainOptions
		want          error // nil: accepted
		requestErr    bool  // a *RequestError rather than a *VerifyError
	}{
		{name: "client", leaf: client, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageClientAuth}},
		{name: "server by name, via intermediate", leaf: server, intermediates: mid, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageServerAuth, ServerName: "server.test"}},
		{name: "server by address", leaf: server, intermediates: mid, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageServerAuth, ServerName: "192.0.2.1"}},
		{name: "missing intermediate", leaf: server, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageServerAuth, ServerName: "server.test"}, want: provider.ErrUnknownAuthority},
		{name: "other name", leaf: server, intermediates: mid, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageServerAuth, ServerName: "other.test"}, want: provider.ErrNameMismatch},
		{name: "other address", leaf: server, intermediates: mid, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageServerAuth, ServerName: "192.0.2.2"}, want: provider.ErrNameMismatch},
		{name: "client as server", leaf: client, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageServerAuth, ServerName: "client.test"}, want: provider.ErrIncompatibleUsage},
		{name: "server as client", leaf: server, intermediates: mid, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageClientAuth}, want: provider.ErrIncompatibleUsage},
		{name: "expired", leaf: client, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageClientAuth, Time: later}, want: provider.ErrExpired},
		{name: "expired, allowed", leaf: client, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageClientAuth, Time: later, InsecureAllowExpired: true}},
		{name: "foreign CA", leaf: alien, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageClientAuth}, want: provider.ErrUnknownAuthority},
		{name: "CA as peer", leaf: inter.cert, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageClientAuth}, want: provider.ErrIncompatibleUsage},
		{name: "no leaf", roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageClientAuth}, want: provider.ErrNoCertificate},
		{name: "zero usage", leaf: client, roots: root.pool, opts: &provider.VerifyChainOptions{}, want: provider.ErrInvalidRequest, requestErr: true},
		{name: "nil options", leaf: client, roots: root.pool, want: provider.ErrInvalidRequest, requestErr: true},
		{name: "server without name", leaf: server, intermediates: mid, roots: root.pool, opts: &provider.VerifyChainOptions{Usage: provider.UsageServerAuth}, want: provider.ErrInvalidRequest, requestErr: true},
		{name: "nil roots", leaf: client, opts: &provider.VerifyChainOptions{Usage: provider.UsageClientAuth}, want: provider.ErrInvalidRequest, requestErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chains, err := provider.VerifyChain(tc.leaf, tc.intermediates, tc.roots, tc.opts)
			if tc.want == nil {
				require.NoError(t, err)
				assert.NotEmpty(t, chains)
				return
			}
			assert.Nil(t, chains)
			assert.ErrorIs(t, err, tc.want)
			if tc.requestErr {
				var re *provider.RequestError
				assert.ErrorAs(t, err, &re)
				return
			}
			var ve *provider.VerifyError
			require.ErrorAs(t, err, &ve)
			if tc.leaf != nil {
				assert.Equal(t, tc.leaf.SerialNumber, ve.Serial, "the error names the certificate")
			}
		})
	}
}

func TestVerifyRequestCheck(t *testing.T) {
	tests := []struct {
		name  string
		req   *provider.VerifyRequest
		field string // empty when the request passes
	}{
		{name: "client", req: &provider.VerifyRequest{Usage: provider.UsageClientAuth}},
		{name: "server", req: &provider.VerifyRequest{Usage: provider.UsageServerAuth, ServerName: "kvm1"}},
		{name: "nil", req: nil},
		{name: "zero usage", req: &provider.VerifyRequest{ServerName: "kvm1"}, field: "usage"},
		{name: "unknown usage", req: &provider.VerifyRequest{Usage: 7}, field: "usage"},
		{name: "server without name", req: &provider.VerifyRequest{Usage: provider.UsageServerAuth}, field: "server name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Check()
			if tc.req == nil {
				assertRequestError(t, err, "")
				return
			}
			if tc.field == "" {
				assert.NoError(t, err)
				return
			}
			assertRequestError(t, err, tc.field)
		})
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		u     provider.Usage
		name  string
		eku   x509.ExtKeyUsage
		valid bool
	}{
		{u: provider.UsageClientAuth, name: "clientAuth", eku: x509.ExtKeyUsageClientAuth, valid: true},
		{u: provider.UsageServerAuth, name: "serverAuth", eku: x509.ExtKeyUsageServerAuth, valid: true},
		{u: provider.UsageUnspecified, name: "unspecified"},
		{u: 9, name: "Usage(9)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.name, tc.u.String())
			assert.Equal(t, tc.valid, tc.u.Valid())
			eku, ok := tc.u.ExtKeyUsage()
			assert.Equal(t, tc.valid, ok)
			if ok {
				assert.Equal(t, tc.eku, eku)
			}
		})
	}
}

func TestIssueResultHelpers(t *testing.T) {
	root := newTestPKI(t)
	inter := root.sub(t)
	leaf := inter.leaf(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, "server.test")
	key := leaf.PrivateKey.(*ecdsa.PrivateKey)
	full := &provider.IssueResult{Certificate: leaf.Leaf, Chain: []*x509.Certificate{inter.cert, root.cert}, PrivateKey: key}

	t.Run("with intermediate", func(t *testing.T) {
		tc, err := full.TLSCertificate()
		require.NoError(t, err)
		assert.Equal(t, [][]byte{leaf.Leaf.Raw, inter.cert.Raw}, tc.Certificate, "leaf and intermediate, no root")
		assert.Same(t, leaf.Leaf, tc.Leaf)
		assert.Equal(t, key, tc.PrivateKey)

		chain, err := full.ChainPEM()
		require.NoError(t, err)
		assert.Equal(t, []*x509.Certificate{leaf.Leaf, inter.cert}, parsePEMCertificates(t, chain))
		keyPEM, err := full.KeyPEM()
		require.NoError(t, err)
		assert.Contains(t, string(keyPEM), "-----BEGIN PRIVATE KEY-----")
		// The files load as libvirt's and Go's loaders read them, and
		// a client trusting the root alone verifies the chain.
		pair, err := tls.X509KeyPair(chain, keyPEM)
		require.NoError(t, err)
		assert.Equal(t, tc.Certificate, pair.Certificate)
		res := handshake(t, &tls.Config{Certificates: []tls.Certificate{pair}}, &tls.Config{RootCAs: root.pool, ServerName: "server.test"})
		assert.NoError(t, res.clientErr)
	})
	t.Run("root only chain", func(t *testing.T) {
		direct := root.leaf(t, nil, "direct.test")
		r := &provider.IssueResult{Certificate: direct.Leaf, Chain: []*x509.Certificate{root.cert}, PrivateKey: direct.PrivateKey.(*ecdsa.PrivateKey)}
		tc, err := r.TLSCertificate()
		require.NoError(t, err)
		assert.Equal(t, [][]byte{direct.Leaf.Raw}, tc.Certificate)
	})
	t.Run("CSR result has no key", func(t *testing.T) {
		r := &provider.IssueResult{Certificate: leaf.Leaf, Chain: full.Chain}
		_, err := r.TLSCertificate()
		assert.ErrorContains(t, err, "no private key")
		_, err = r.KeyPEM()
		assert.ErrorContains(t, err, "no private key")
		chain, err := r.ChainPEM()
		require.NoError(t, err, "the chain needs no key")
		assert.Len(t, parsePEMCertificates(t, chain), 2)
	})
	t.Run("no certificate", func(t *testing.T) {
		for _, r := range []*provider.IssueResult{nil, {}, {Certificate: leaf.Leaf, Chain: []*x509.Certificate{nil}}} {
			_, err := r.TLSCertificate()
			assert.Error(t, err)
			_, err = r.ChainPEM()
			assert.Error(t, err)
		}
	})
}
