package rootca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

var testPassword = []byte("correct horse battery staple")

func passwordFunc() ([]byte, error) { return testPassword, nil }

// newCA creates a CA on a fresh MemStore. opts may be nil; without a
// Password or Signer the CA gets a fresh P-256 Signer.
func newCA(t testing.TB, opts *rootca.Options) (*rootca.CA, *rootca.MemStore) {
	t.Helper()
	var o rootca.CreateOptions
	if opts != nil {
		o.Options = *opts
	}
	return newCACreate(t, &o)
}

// newCACreate is newCA with creation options.
func newCACreate(t testing.TB, opts *rootca.CreateOptions) (*rootca.CA, *rootca.MemStore) {
	t.Helper()
	var o rootca.CreateOptions
	if opts != nil {
		o = *opts
	}
	if o.Password == nil && o.Signer == nil {
		// An external key spares the 600,000 PBKDF2 rounds of an
		// encrypted one, which cost seconds under the race detector;
		// the tests of Open cover the encrypted key.
		o.Signer = genKey(t, "p256")
	}
	store := rootca.NewMemStore()
	ca, err := rootca.Create(context.Background(), store, &o)
	require.NoError(t, err)
	t.Cleanup(func() { ca.Close() })
	return ca, store
}

func genKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch kind {
	case "rsa1024":
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa3072":
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	case "rsa4096":
		k, err = rsa.GenerateKey(rand.Reader, 4096)
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p224":
		k, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	require.NoError(t, err)
	return k
}

// makeCSR returns a PEM CSR for key.
func makeCSR(t testing.TB, key crypto.Signer, cn string, dns []string, ips []net.IP) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    dns,
		IPAddresses: ips,
	}, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func issue(t testing.TB, ca *rootca.CA, req *provider.IssueRequest) *provider.IssueResult {
	t.Helper()
	res, err := ca.Issue(context.Background(), req)
	require.NoError(t, err)
	return res
}

func sameKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func keyBits(pub crypto.PublicKey) int {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return k.N.BitLen()
	case *ecdsa.PublicKey:
		return k.Curve.Params().BitSize
	}
	return 0
}

// minTestKeyIterations is the PBKDF2 count of the CA keys of tests that
// make many (rootca.SetKeyIterations): the least a stored key may have.
const minTestKeyIterations = 1_000
