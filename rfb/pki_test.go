package rfb_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// testCA is a rootca CA with the certificates the tests use, all ECDSA so
// that -race runs stay fast.
type testCA struct {
	ca     *rootca.CA
	caPEM  []byte
	roots  *x509.CertPool
	server issued // role host, names localhost and 127.0.0.1
	client issued // role client, the console proxy
}

// issued is a certificate with its key, in the forms the tests need.
type issued struct {
	cert    tls.Certificate
	certPEM []byte
	keyPEM  []byte
}

var (
	pkiMu     sync.Mutex
	pkiByName = map[string]*testCA{}
)

// getCA returns the test CA named name, created once per test binary.
func getCA(t testing.TB, name string) *testCA {
	t.Helper()
	pkiMu.Lock()
	defer pkiMu.Unlock()
	if p, ok := pkiByName[name]; ok {
		return p
	}
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca, err := rootca.Open(ctx, rootca.NewMemStore(), &rootca.Options{
		Signer:           key,
		Subject:          pkix.Name{Organization: []string{"kvmpki rfb test"}, CommonName: name},
		LeafKeyAlgorithm: provider.KeyAlgorithmECDSA,
	})
	require.NoError(t, err)
	bundle, err := provider.CABundle(ctx, ca)
	require.NoError(t, err)
	p := &testCA{ca: ca, caPEM: bundle, roots: x509.NewCertPool()}
	require.True(t, p.roots.AppendCertsFromPEM(bundle))
	p.server = p.issue(t, &provider.IssueRequest{
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Role: provider.RoleHost,
	})
	p.client = p.issue(t, &provider.IssueRequest{CommonName: "console-proxy", Role: provider.RoleClient})
	pkiByName[name] = p
	return p
}

func (p *testCA) issue(t testing.TB, req *provider.IssueRequest) issued {
	t.Helper()
	res, err := p.ca.Issue(context.Background(), req)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(res.PrivateKey)
	require.NoError(t, err)
	return issued{
		cert:    tls.Certificate{Certificate: [][]byte{res.Certificate.Raw}, PrivateKey: res.PrivateKey, Leaf: res.Certificate},
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: res.Certificate.Raw}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

// serverTLS is the rfbtest server's TLS configuration: the host
// certificate, and a verified client certificate required.
func (p *testCA) serverTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.server.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.roots,
	}
}

// clientTLS is the proxy's TLS configuration.
func (p *testCA) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.roots, Certificates: []tls.Certificate{p.client.cert}}
}

// serverPKI is the server's side for internal/peers.
func (p *testCA) serverPKI() peers.PKI {
	return peers.PKI{CACert: p.caPEM, Cert: p.server.certPEM, Key: p.server.keyPEM}
}
