package provider_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// testPKI is a throwaway CA minted in code for the tests of this package.
type testPKI struct {
	cert *x509.Certificate
	key  crypto.Signer
	pool *x509.CertPool
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := mintCA(t, "provider test CA", 24*time.Hour, nil)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.cert)
	return p
}

// sub returns an intermediate CA signed by p; its pool is p's (the roots).
func (p *testPKI) sub(t testing.TB) *testPKI {
	t.Helper()
	s := mintCA(t, "provider test intermediate CA", 12*time.Hour, p)
	s.pool = p.pool
	return s
}

// mintCA makes a CA certificate valid from an hour ago for validity,
// signed by parent, or self-signed if parent is nil; its pool is unset.
func mintCA(t testing.TB, cn string, validity time.Duration, parent *testPKI) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testPKI{cert: cert, key: key}
}

// leaf issues a certificate with the given extended key usages for names,
// DNS names or IP addresses; the first is also the common name.
func (p *testPKI) leaf(t testing.TB, eku []x509.ExtKeyUsage, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		ExtKeyUsage:  eku,
		SubjectKeyId: skid(t, key.Public()),
	}
	for _, name := range names {
		if ip := net.ParseIP(name); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, name)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, key.Public(), p.key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
}

func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	require.NoError(t, err)
	return n.Add(n, big.NewInt(1))
}

func skid(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	sum := sha256.Sum256(der)
	return sum[:20]
}

// staticProvider implements only provider.Provider: it issues nothing and
// serves a fixed CA list. It stands for a provider without any optional
// capability.
type staticProvider struct {
	name   string
	certs  []*x509.Certificate
	err    error
	closed atomic.Int32 // calls of Close
}

func (p *staticProvider) Close() error {
	p.closed.Add(1)
	return nil
}

func (p *staticProvider) Name() string        { return p.name }
func (p *staticProvider) Description() string { return "static " + p.name }

func (p *staticProvider) CACertificates(context.Context) ([]*x509.Certificate, error) {
	return p.certs, p.err
}

func (p *staticProvider) Issue(context.Context, *provider.IssueRequest) (*provider.IssueResult, error) {
	return nil, &provider.RequestError{Field: "role", Reason: "static provider issues nothing"}
}

func (p *staticProvider) Revoke(context.Context, *provider.RevokeRequest) error {
	return provider.ErrNotFound
}
