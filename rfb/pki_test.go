package rfb_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
)

// testCA is a CA minted in code with the certificates the tests use, all
// ECDSA so that -race runs stay fast. The profiles are the ones QEMU and
// Go both accept (rfb.md §10): a server certificate with SANs
// DNS:localhost and IP:127.0.0.1 and EKU serverAuth, a client
// certificate with EKU clientAuth.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caPEM  []byte
	roots  *x509.CertPool
	server issued // names localhost and 127.0.0.1
	client issued // the console proxy
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"kvmpki rfb test"}, CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := &testCA{cert: cert, key: key, roots: x509.NewCertPool()}
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	p.roots.AddCert(cert)
	p.server = p.issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.client = p.issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "console-proxy"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	pkiByName[name] = p
	return p
}

var serial = struct {
	sync.Mutex
	n int64
}{n: 1}

// issue signs tmpl (subject, names and EKU) with a fresh key.
func (p *testCA) issue(t testing.TB, tmpl *x509.Certificate) issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial.Lock()
	serial.n++
	tmpl.SerialNumber = big.NewInt(serial.n)
	serial.Unlock()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, key.Public(), p.key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return issued{
		cert:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
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
