package ca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// clock is a settable time source shared by the CA and the manager.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// env is a rootca CA registered as "root" (and, without its extra
// capabilities, as "bare") with a Manager around it.
type env struct {
	m      *ca.Manager
	reg    *provider.Registry
	caKey  crypto.Signer
	caCert *x509.Certificate
	clock  *clock
	root   *rootca.CA // a second handle on the same store, for test-side issuance
}

// bare hides every capability of a provider but the core interface.
type bare struct{ provider.Provider }

func (b bare) Name() string { return "bare" }

type envOptions struct {
	settings  ca.Settings
	caOptions rootca.Options
	caValid   time.Duration
}

func newEnv(t testing.TB, o *envOptions) *env {
	t.Helper()
	if o == nil {
		o = &envOptions{}
	}
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	clk := &clock{}
	store := rootca.NewMemStore()
	opts := o.caOptions
	opts.Signer = key
	opts.Time = clk.Now
	opts.RevocationPollInterval = -1
	created, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: opts, Validity: o.caValid})
	require.NoError(t, err)
	t.Cleanup(func() { created.Close() })
	reg := &provider.Registry{}
	require.NoError(t, reg.Register("root", "kvmpki built-in CA", func(ctx context.Context) (provider.Provider, error) {
		// Share the created CA: one process, one in-memory revocation set.
		return nopClose{created}, nil
	}))
	require.NoError(t, reg.Register("bare", "a CA without optional capabilities", func(ctx context.Context) (provider.Provider, error) {
		return bare{nopClose{created}}, nil
	}))
	s := o.settings
	if s.Time == nil {
		s.Time = clk.Now
	}
	m, err := ca.New(ctx, reg, &s)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return &env{m: m, reg: reg, caKey: key, caCert: created.Certificate(), clock: clk, root: created}
}

// nopClose keeps the shared CA open when the manager closes its handle.
type nopClose struct{ *rootca.CA }

func (nopClose) Close() error { return nil }

// hostCert issues a host certificate for a generated key.
func (e *env) issue(t testing.TB, role provider.Role, dns []string, ips []net.IP) (*provider.IssueResult, tls.Certificate) {
	t.Helper()
	res, err := e.root.Issue(context.Background(), &provider.IssueRequest{DNSNames: dns, IPAddresses: ips, Role: role, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	require.NoError(t, err)
	tc, err := res.TLSCertificate()
	require.NoError(t, err)
	return res, tc
}

func (e *env) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(e.caCert)
	return p
}

func (e *env) identity(t testing.TB) *ca.Identity {
	t.Helper()
	id, err := e.m.NewIdentity(context.Background(), &ca.IdentityOptions{Hostname: "ms1.example.org", Addresses: []net.IP{net.ParseIP("127.0.0.1")}})
	require.NoError(t, err)
	return id
}

func csrFor(t testing.TB, cn string, dns ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}, key)
	require.NoError(t, err)
	return der
}

// foreignCert is a client certificate from another CA.
func foreignCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: bigOne(), Subject: pkix.Name{CommonName: "intruder"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func bigOne() *big.Int { return big.NewInt(1) }
