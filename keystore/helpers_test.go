package keystore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// testPassword is the store password of hand-made test keystores.
var testPassword = []byte("changeit-test-pw")

// newCA opens an in-memory rootca CA with an external P-256 key, which
// skips the PBKDF2 of an encrypted CA key.
func newCA(t testing.TB) *rootca.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca, err := rootca.Create(context.Background(), rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: key}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ca.Close() })
	return ca
}

// issue has ca sign csrPEM for a host named kvm1.example.org at 127.0.0.1,
// and returns the certificate and CA bundle as PEM.
func issue(t testing.TB, ca *rootca.CA, csrPEM []byte) (certPEM, caPEM []byte) {
	t.Helper()
	res, err := ca.Issue(context.Background(), &provider.IssueRequest{
		CSR:         csrPEM,
		DNSNames:    []string{"kvm1.example.org"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		Role:        provider.RoleHost,
	})
	require.NoError(t, err)
	bundle, err := provider.CABundle(context.Background(), ca)
	require.NoError(t, err)
	return pemCerts(res.Certificate), bundle
}

func pemCerts(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// hostSetupOptions names the test host explicitly, so tests do not
// depend on the machine's name and addresses.
func hostSetupOptions(format Format, kt KeyAlgorithm) *SetupOptions {
	return &SetupOptions{
		CommonName:   "kvm1.example.org",
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		Format:       format,
		KeyAlgorithm: kt,
	}
}

// onboard runs Setup and Import in dir against ca, and returns the
// passphrase.
func onboard(t testing.TB, ca *rootca.CA, dir string, format Format, kt KeyAlgorithm) []byte {
	t.Helper()
	res, err := Setup(context.Background(), dir, hostSetupOptions(format, kt))
	require.NoError(t, err)
	certPEM, caPEM := issue(t, ca, res.CSR)
	_, err = Import(context.Background(), dir, certPEM, caPEM, nil)
	require.NoError(t, err)
	pw, err := readPassphrase(context.Background(), filepath.Join(dir, PropertiesFile))
	require.NoError(t, err)
	return pw
}

// testStore builds a keystore with one key entry ("cloud", chain leaf +
// CA) and n trusted entries "cloudca.1".."cloudca.n", all from a rootca
// CA.
func testStore(t testing.TB, ca *rootca.CA, format Format, n int) (*KeyStore, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	require.NoError(t, err)
	res, err := ca.Issue(context.Background(), &provider.IssueRequest{
		CSR:      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}),
		DNSNames: []string{"kvm1.example.org"},
		Role:     provider.RoleHost,
	})
	require.NoError(t, err)
	ks := New(format)
	require.NoError(t, ks.SetPrivateKey(KeyAlias, key, append([]*x509.Certificate{res.Certificate}, res.Chain...)))
	for i := range n {
		other := newCA(t)
		require.NoError(t, ks.SetTrustedCert(CAAliasPrefix+strconv.Itoa(i+1), other.Certificate()))
	}
	return ks, key
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// fixedTime returns a clock fixed at t.
func fixedTime(t time.Time) func() time.Time { return func() time.Time { return t } }
