package libvirttls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// testCA is a rootca CA for tests, with an in-memory store and an
// external key (no PBKDF2, which is slow under -race).
type testCA struct {
	ca    *rootca.CA
	caPEM []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca, err := rootca.Create(context.Background(), rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: key}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ca.Close() })
	return &testCA{ca: ca, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw})}
}

// issue returns credentials for a certificate of role with the given
// names (the first is the CN).
func (c *testCA) issue(t testing.TB, role provider.Role, names ...string) (*Credentials, *x509.Certificate) {
	t.Helper()
	req := &provider.IssueRequest{Role: role, KeyAlgorithm: provider.KeyAlgorithmECDSA, CommonName: names[0]}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			req.IPAddresses = append(req.IPAddresses, ip)
		} else {
			req.DNSNames = append(req.DNSNames, n)
		}
	}
	res, err := c.ca.Issue(context.Background(), req)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(res.PrivateKey)
	require.NoError(t, err)
	return &Credentials{
		CACert: c.caPEM,
		Cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: res.Certificate.Raw}),
		Key:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	}, res.Certificate
}

// host issues a host certificate (serverAuth and clientAuth) for
// localhost and 127.0.0.1 plus names.
func (c *testCA) host(t testing.TB, cn string) (*Credentials, *x509.Certificate) {
	t.Helper()
	return c.issue(t, provider.RoleHost, cn, "localhost", "127.0.0.1")
}

func (c *testCA) revoke(t testing.TB, cert *x509.Certificate) {
	t.Helper()
	require.NoError(t, c.ca.Revoke(context.Background(), &provider.RevokeRequest{Serial: cert.SerialNumber}))
}

// crl returns the CA's current CRL as PEM.
func (c *testCA) crl(t testing.TB) []byte {
	t.Helper()
	crl, err := c.ca.SignCRL(context.Background())
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})
}
