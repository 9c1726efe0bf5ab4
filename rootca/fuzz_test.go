package rootca_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

var update = flag.Bool("update", false, "rewrite the CSR seeds in testdata/csr")

const seedDir = "testdata/csr"

// TestCSRSeeds writes the fuzzing seeds with -update, and otherwise checks
// that each seed still meets the fate its name gives: good-* are issued,
// bad-* refused.
func TestCSRSeeds(t *testing.T) {
	if *update {
		writeSeeds(t)
	}
	files, err := filepath.Glob(filepath.Join(seedDir, "*"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no seeds: run go test ./rootca -run TestCSRSeeds -update")
	// The seeds' names are their own: sign them as CloudStack would.
	ca, _ := newCA(t, &rootca.Options{InsecureAllowCSRNames: true})
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			_, err = ca.Issue(context.Background(), &provider.IssueRequest{CSR: data, Role: provider.RoleHost})
			switch {
			case len(name) > 5 && name[:5] == "good-":
				assert.NoError(t, err)
			case len(name) > 4 && name[:4] == "bad-":
				assert.ErrorIs(t, err, provider.ErrInvalidRequest)
			default:
				t.Fatalf("seed %s is neither good- nor bad-", name)
			}
		})
	}
}

func writeSeeds(t *testing.T) {
	t.Helper()
	require.NoError(t, os.MkdirAll(seedDir, 0o755))
	write := func(name string, der []byte, asPEM bool) {
		data := der
		if asPEM {
			data = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		}
		require.NoError(t, os.WriteFile(filepath.Join(seedDir, name), data, 0o644))
	}
	csr := func(kind, cn string, dns []string, ips []net.IP, ext []pkix.Extension) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: cn, Organization: []string{"cloudstack"}}, DNSNames: dns, IPAddresses: ips, ExtraExtensions: ext,
		}, genKey(t, kind))
		require.NoError(t, err)
		return der
	}
	write("good-p256.pem", csr("p256", "kvm1.example.org", []string{"kvm1"}, []net.IP{net.ParseIP("192.0.2.1")}, nil), true)
	write("good-p384.der", csr("p384", "kvm2.example.org", nil, []net.IP{net.ParseIP("2001:db8::2")}, nil), false)
	write("good-rsa2048.pem", csr("rsa2048", "kvm3.example.org", []string{"kvm3"}, nil, nil), true)
	write("bad-rsa1024.pem", csr("rsa1024", "weak.example.org", nil, nil, nil), true)
	bc, err := asn1.Marshal(struct{ IsCA bool }{true})
	require.NoError(t, err)
	write("bad-ca-true.der", csr("p256", "ca.example.org", nil, nil, []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}}), false)
	write("bad-sha1.der", sha1CSR(t), false)
	good := csr("p256", "sig.example.org", nil, nil, nil)
	good[len(good)-3] ^= 0x55
	write("bad-signature.der", good, false)
	names := make([]string, 300)
	for i := range names {
		names[i] = fmt.Sprintf("n%d.example.org", i)
	}
	write("bad-too-many-names.der", csr("p256", "many.example.org", names, nil, nil), false)
	write("bad-nul.pem", csr("p256", "kvm\x00.example.org", nil, nil, nil), true)
	write("bad-truncated.der", good[:len(good)/3], false)
}

// FuzzIssueCSR feeds arbitrary bytes to Issue as a CSR. It must never
// panic; every refusal must match provider.ErrInvalidRequest and leave the
// inventory unchanged; every certificate issued must chain to the CA and
// certify the CSR's key.
func FuzzIssueCSR(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(seedDir, "*"))
	require.NoError(f, err)
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	// Lax about CSR names, so that the fuzzer reaches the names policy.
	ca, store := newCA(f, &rootca.Options{InsecureAllowCSRNames: true})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		before, err := store.ListCertificates(ctx, nil)
		require.NoError(t, err)
		res, err := ca.Issue(ctx, &provider.IssueRequest{CSR: data, Role: provider.RoleHost})
		after, lerr := store.ListCertificates(ctx, nil)
		require.NoError(t, lerr)
		if err != nil {
			require.ErrorIs(t, err, provider.ErrInvalidRequest)
			require.Len(t, after, len(before))
			return
		}
		require.Len(t, after, len(before)+1)
		csr, err := provider.ParseCSR(data)
		require.NoError(t, err)
		require.True(t, sameKey(csr.PublicKey, res.Certificate.PublicKey))
		_, err = res.Certificate.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		require.NoError(t, err)
	})
}
