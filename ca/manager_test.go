package ca_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

func TestSettingsRefused(t *testing.T) {
	reg := &provider.Registry{}
	day := 24 * time.Hour
	tests := []struct {
		name  string
		s     ca.Settings
		field string
	}{
		{"rsa too small", ca.Settings{KeyAlgorithm: provider.KeyAlgorithmRSA, KeySize: 1024}, "KeySize"},
		{"ecdsa odd size", ca.Settings{KeyAlgorithm: provider.KeyAlgorithmECDSA, KeySize: 300}, "KeySize"},
		{"size without algorithm", ca.Settings{KeySize: 2048}, "KeySize"},
		{"negative validity", ca.Settings{Validity: -day}, "Validity"},
		{"validity over max", ca.Settings{Validity: 400 * day, MaxValidity: 365 * day}, "Validity"},
		{"max over ten years", ca.Settings{MaxValidity: 4000 * day}, "MaxValidity"},
		{"alert not shorter than validity", ca.Settings{Validity: 10 * day, ExpiryAlertPeriod: 10 * day}, "ExpiryAlertPeriod"},
		{"interval too short", ca.Settings{BackgroundInterval: time.Second}, "BackgroundInterval"},
		{"interval longer than alert", ca.Settings{BackgroundInterval: 20 * day}, "BackgroundInterval"},
		{"marker single label", ca.Settings{ManagementSAN: "internal"}, "ManagementSAN"},
		{"marker not a name", ca.Settings{ManagementSAN: "a b.example"}, "ManagementSAN"},
		{"provider with spaces", ca.Settings{Provider: " root"}, "Provider"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.New(context.Background(), reg, &tc.s)
			var se *ca.SettingError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tc.field, se.Field)
			assert.Contains(t, err.Error(), "ca.framework.")
		})
	}
}

func TestNewDefaultsAndUnknownProvider(t *testing.T) {
	_, err := ca.New(context.Background(), &provider.Registry{}, nil)
	assert.ErrorIs(t, err, provider.ErrUnknownProvider, "the default provider is root, absent here")
	_, err = ca.New(context.Background(), nil, nil)
	assert.Error(t, err)
}

func TestProvidersAndBundle(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	infos, err := e.m.Providers(ctx)
	require.NoError(t, err)
	assert.Equal(t, []provider.Info{{Name: "bare", Description: "a CA without optional capabilities"}, {Name: "root", Description: "kvmpki built-in CA"}}, infos)
	bundle, err := e.m.CABundle(ctx)
	require.NoError(t, err)
	assert.Equal(t, string(provider.EncodeCertificates(e.caCert)), string(bundle))
	assert.Equal(t, "root", e.m.ProviderName())
}

func TestIssue(t *testing.T) {
	e := newEnv(t, &envOptions{settings: ca.Settings{Validity: 30 * 24 * time.Hour, ExpiryAlertPeriod: 5 * 24 * time.Hour}})
	ctx := context.Background()
	t.Run("csr with CloudStack's names", func(t *testing.T) {
		res, err := e.m.Issue(ctx, &ca.IssueRequest{
			CSR:         csrFor(t, "kvm1.example.org"),
			DNSNames:    []string{"kvm1.example.org", "", "10.0.0.5", "KVM1.example.org"},
			IPAddresses: []net.IP{net.ParseIP("10.0.0.5"), net.ParseIP("192.0.2.7")},
		})
		require.NoError(t, err)
		assert.Equal(t, []string{"kvm1.example.org"}, res.Certificate.DNSNames)
		assert.Equal(t, "[10.0.0.5 192.0.2.7]", fmt.Sprint(res.Certificate.IPAddresses), "the IP listed as a domain moves to the IP SANs, once")
		assert.Equal(t, provider.RoleHost, provider.RoleOf(res.Certificate))
		assert.WithinDuration(t, time.Now().Add(30*24*time.Hour), res.Certificate.NotAfter, time.Minute)
		assert.Nil(t, res.PrivateKey)
	})
	t.Run("generated key", func(t *testing.T) {
		res, err := e.m.Issue(ctx, &ca.IssueRequest{DNSNames: []string{"cpvm-1.example.org"}, Role: provider.RoleServer})
		require.NoError(t, err)
		assert.Equal(t, "cpvm-1.example.org", res.Certificate.Subject.CommonName)
		assert.NotNil(t, res.PrivateKey)
	})
	refusals := []struct {
		name string
		req  ca.IssueRequest
		want error
	}{
		{"duration over max", ca.IssueRequest{DNSNames: []string{"a.example"}, Validity: 31 * 24 * time.Hour}, ca.ErrInvalidRequest},
		{"negative duration", ca.IssueRequest{DNSNames: []string{"a.example"}, Validity: -time.Hour}, ca.ErrInvalidRequest},
		{"marker in request", ca.IssueRequest{DNSNames: []string{"Cloudstack.Internal"}}, ca.ErrManagementName},
		{"name below marker", ca.IssueRequest{DNSNames: []string{"x.cloudstack.internal"}}, ca.ErrManagementName},
		{"marker in CSR SAN", ca.IssueRequest{CSR: csrFor(t, "kvm2.example.org", "cloudstack.internal")}, ca.ErrManagementName},
		{"marker as CSR CN", ca.IssueRequest{CSR: csrFor(t, "cloudstack.internal")}, ca.ErrManagementName},
		{"garbage CSR", ca.IssueRequest{CSR: []byte("not a csr")}, ca.ErrInvalidRequest},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.m.Issue(ctx, &tc.req)
			assert.ErrorIs(t, err, tc.want)
			assert.ErrorIs(t, err, ca.ErrInvalidRequest)
		})
	}
	_, err := e.m.Issue(ctx, nil)
	assert.ErrorIs(t, err, ca.ErrInvalidRequest)
}

func TestRevokeSerialForms(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	forms := []struct {
		name string
		f    func(s string) string
	}{
		{"plain", func(s string) string { return s }},
		{"upper with colons", func(s string) string { return colons(strings.ToUpper(s)) }},
		{"leading zeros", func(s string) string { return "0000" + s }},
		{"0x prefix", func(s string) string { return "0x" + s }},
	}
	for _, tc := range forms {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := e.issue(t, provider.RoleHost, []string{"h.example"}, nil)
			serial := res.Certificate.SerialNumber.Text(16)
			require.NoError(t, e.m.Revoke(ctx, &ca.RevokeRequest{Serial: tc.f(serial), Reason: provider.ReasonKeyCompromise}))
			rec, err := e.root.LookupCertificate(ctx, res.Certificate.SerialNumber)
			require.NoError(t, err)
			assert.Equal(t, provider.StatusRevoked, rec.Status)
			assert.Equal(t, provider.ReasonKeyCompromise, rec.Reason)
		})
	}
	t.Run("unknown serial", func(t *testing.T) {
		err := e.m.Revoke(ctx, &ca.RevokeRequest{Serial: "0a:bc:de"})
		assert.ErrorIs(t, err, ca.ErrNotFound)
	})
	for _, bad := range []string{"", "zz", "00", "-5", strings.Repeat("f", 2000)} {
		t.Run("bad "+bad[:min(len(bad), 8)], func(t *testing.T) {
			assert.ErrorIs(t, e.m.Revoke(ctx, &ca.RevokeRequest{Serial: bad}), ca.ErrInvalidRequest)
		})
	}
}

func colons(s string) string {
	if len(s)%2 == 1 {
		s = "0" + s
	}
	var parts []string
	for i := 0; i < len(s); i += 2 {
		parts = append(parts, s[i:i+2])
	}
	return strings.Join(parts, ":")
}

func TestMissingCapabilities(t *testing.T) {
	e := newEnv(t, &envOptions{settings: ca.Settings{Provider: "bare"}})
	ctx := context.Background()
	res, _ := e.issue(t, provider.RoleHost, []string{"h.example"}, nil)
	// Revocation works (core contract), but there is no inventory to
	// look the certificate up in: the provider answers alone.
	require.NoError(t, e.m.Revoke(ctx, &ca.RevokeRequest{Serial: res.Certificate.SerialNumber.Text(16)}))
	// A CRL: bare neither signs nor fetches one.
	rec := httpGet(t, e.m.CRLHandler(), "/crl", nil)
	assert.Equal(t, 501, rec.Code)
	// The agent port without verifier and CRLs refuses every client,
	// with an error matching errors.ErrUnsupported, never a panic.
	id := e.identity(t)
	_, client := e.issue(t, provider.RoleHost, []string{"agent.example"}, nil)
	var refusals []ca.Refusal
	err := e.handshake(t, &ca.AgentServerConfig{Identity: id, OnRefusal: func(r ca.Refusal) { refusals = append(refusals, r) }}, &client)
	require.Error(t, err)
	require.Len(t, refusals, 1)
	assert.ErrorIs(t, refusals[0].Err, errors.ErrUnsupported)
}

func TestSetProvider(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	require.NoError(t, e.m.SetProvider(ctx, "bare"))
	assert.Equal(t, "bare", e.m.ProviderName())
	assert.ErrorIs(t, e.m.SetProvider(ctx, "nope"), provider.ErrUnknownProvider)
	assert.Equal(t, "bare", e.m.ProviderName(), "a failed swap keeps the current provider")
	require.NoError(t, e.m.SetProvider(ctx, "root"))
	require.NoError(t, e.m.Close())
	require.NoError(t, e.m.Close(), "Close is idempotent")
	_, err := e.m.CABundle(ctx)
	assert.ErrorIs(t, err, ca.ErrClosed)
}

// closeCounter counts Close calls and fails calls made after it.
type closeCounter struct {
	nopClose
	closed chan struct{}
}

func (c *closeCounter) Close() error { close(c.closed); return nil }

func TestSetProviderClosesOldWhenUnused(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	cc := &closeCounter{nopClose: nopClose{e.root}, closed: make(chan struct{})}
	require.NoError(t, e.reg.Register("counted", "", func(context.Context) (provider.Provider, error) {
		return namedAs{cc, "counted"}, nil
	}))
	require.NoError(t, e.m.SetProvider(ctx, "counted"))
	// A CRL request holds the provider while it runs; the swap below
	// must not close it under that request.
	crlHandler := e.m.CRLHandler()
	require.NoError(t, e.m.SetProvider(ctx, "root"))
	select {
	case <-cc.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the replaced provider was never closed")
	}
	assert.Equal(t, 200, httpGet(t, crlHandler, "/crl", nil).Code, "handlers follow the current provider")
}

type namedAs struct {
	*closeCounter
	name string
}

func (n namedAs) Name() string { return n.name }

// crlOnly is a provider whose CRLs are fetched (a CRLSource) and that has
// no verifier or inventory, like an ACME CA.
type crlOnly struct{ bare }

func (c crlOnly) Name() string { return "crlonly" }

func (c crlOnly) CRLs(ctx context.Context) ([]*x509.RevocationList, error) {
	crl, err := c.bare.Provider.(nopClose).SignCRL(ctx)
	if err != nil {
		return nil, err
	}
	return []*x509.RevocationList{crl}, nil
}

// Without a verifier, the agent port verifies the chain itself and
// checks revocation in the CRL's index.
func TestAgentServerWithCRLSource(t *testing.T) {
	e := newEnv(t, nil)
	require.NoError(t, e.reg.Register("crlonly", "", func(context.Context) (provider.Provider, error) {
		return crlOnly{bare{nopClose{e.root}}}, nil
	}))
	id := e.identity(t)
	require.NoError(t, e.m.SetProvider(context.Background(), "crlonly"))
	res, cert := e.issue(t, provider.RoleHost, []string{"agent.example"}, nil)
	_, serverOnly := e.issue(t, provider.RoleServer, []string{"srv.example"}, nil)
	require.NoError(t, e.handshake(t, &ca.AgentServerConfig{Identity: id}, &cert))
	var log refusalLog
	require.Error(t, e.handshake(t, &ca.AgentServerConfig{Identity: id, OnRefusal: log.add}, &serverOnly))
	assert.ErrorIs(t, log.all()[0].Err, ca.ErrIncompatibleUsage)
	foreign := foreignCert(t)
	require.Error(t, e.handshake(t, &ca.AgentServerConfig{Identity: id}, &foreign))

	require.NoError(t, e.m.Revoke(context.Background(), &ca.RevokeRequest{Serial: res.Certificate.SerialNumber.Text(16)}))
	var log2 refusalLog
	require.Error(t, e.handshake(t, &ca.AgentServerConfig{Identity: id, OnRefusal: log2.add}, &cert))
	require.NotEmpty(t, log2.all())
	assert.ErrorIs(t, log2.all()[0].Err, ca.ErrRevoked)
	// OCSP from the CRL when there is no inventory.
	h := e.ocspHandler(t)
	assert.Equal(t, ocsp.Revoked, ocspQuery(t, h, e.caCert, res.Certificate.SerialNumber, true).Status)
}

// Calls and handshakes running while the provider changes finish on one
// provider or the other, never on a closed one.
func TestSetProviderConcurrent(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var opened, closed atomic.Int64
	require.NoError(t, e.reg.Register("tracked", "", func(context.Context) (provider.Provider, error) {
		opened.Add(1)
		return &tracked{nopClose: nopClose{e.root}, closed: &closed}, nil
	}))
	id := e.identity(t)
	_, cert := e.issue(t, provider.RoleHost, []string{"agent.example"}, nil)
	s := e.serveAgents(t, &ca.AgentServerConfig{Identity: id})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := e.m.Issue(ctx, &ca.IssueRequest{DNSNames: []string{"h.example"}}); err != nil {
					errs <- err
					return
				}
				c, err := ping(s.addr, e.clientConfig(&cert))
				if err != nil {
					errs <- err
					return
				}
				c.Close()
			}
		}()
	}
	for i := 0; i < 20; i++ {
		require.NoError(t, e.m.SetProvider(ctx, map[bool]string{true: "tracked", false: "root"}[i%2 == 0]))
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, opened.Load(), closed.Load(), "every replaced provider was closed once")
}

// tracked fails every call made after Close.
type tracked struct {
	nopClose
	closed   *atomic.Int64
	isClosed atomic.Bool
}

func (p *tracked) Name() string { return "tracked" }
func (p *tracked) Close() error {
	if p.isClosed.CompareAndSwap(false, true) {
		p.closed.Add(1)
	}
	return nil
}
func (p *tracked) Issue(ctx context.Context, req *provider.IssueRequest) (*provider.IssueResult, error) {
	if p.isClosed.Load() {
		return nil, errors.New("issue on a closed provider")
	}
	return p.nopClose.Issue(ctx, req)
}
func (p *tracked) VerifyPeer(ctx context.Context, req *provider.VerifyRequest) error {
	if p.isClosed.Load() {
		return errors.New("verify on a closed provider")
	}
	return p.nopClose.VerifyPeer(ctx, req)
}
