package rootca_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

func TestIssueProfiles(t *testing.T) {
	ca, _ := newCA(t, nil)
	ctx := context.Background()
	bundle, err := ca.CACertificates(ctx)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(bundle[len(bundle)-1])

	tests := []struct {
		name    string
		key     string
		role    provider.Role
		wantKU  x509.KeyUsage
		wantEKU []x509.ExtKeyUsage
	}{
		{"rsa host", "rsa2048", provider.RoleHost, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		{"rsa server", "rsa2048", provider.RoleServer, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"rsa client", "rsa2048", provider.RoleClient, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{"ecdsa host", "p256", provider.RoleHost, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		{"ecdsa server", "p384", provider.RoleServer, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"ecdsa client", "p256", provider.RoleClient, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := genKey(t, tc.key)
			res := issue(t, ca, &provider.IssueRequest{
				CSR:         makeCSR(t, key, "kvm1.example.org", []string{"kvm1.example.org"}, nil),
				DNSNames:    []string{"KVM1", "kvm1.example.org"},
				IPAddresses: []net.IP{net.ParseIP("192.0.2.10")},
				Role:        tc.role,
			})
			c := res.Certificate
			assert.Nil(t, res.PrivateKey)
			assert.Equal(t, tc.wantKU, c.KeyUsage)
			assert.Equal(t, tc.wantEKU, c.ExtKeyUsage)
			assert.True(t, c.BasicConstraintsValid)
			assert.False(t, c.IsCA)
			assert.Len(t, c.SubjectKeyId, 20)
			assert.Equal(t, ca.Certificate().SubjectKeyId, c.AuthorityKeyId)
			assert.Equal(t, "CN=kvm1.example.org", c.Subject.String())
			assert.ElementsMatch(t, []string{"kvm1", "kvm1.example.org"}, c.DNSNames)
			require.Len(t, c.IPAddresses, 1)
			assert.True(t, c.IPAddresses[0].Equal(net.ParseIP("192.0.2.10")))
			assert.True(t, sameKey(c.PublicKey, key.Public()))
			assert.LessOrEqual(t, len(c.SerialNumber.Bytes()), 20)
			assert.GreaterOrEqual(t, c.SerialNumber.BitLen(), 128, "serial should carry at least 128 random bits (rarely fewer leading bits)")
			assert.False(t, c.NotAfter.After(ca.Certificate().NotAfter))
			assert.WithinDuration(t, time.Now().Add(365*24*time.Hour), c.NotAfter, time.Minute)
			for _, u := range tc.wantEKU {
				_, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}, DNSName: "kvm1.example.org"})
				assert.NoError(t, err, "usage %v", u)
			}
			assert.Equal(t, bundle, res.Chain)
		})
	}
}

func TestIssueGeneratedKeys(t *testing.T) {
	ca, _ := newCA(t, nil)
	tests := []struct {
		name string
		alg  provider.KeyAlgorithm
		size int
		want x509.PublicKeyAlgorithm
		bits int
	}{
		{"default is RSA-2048", provider.KeyAlgorithmDefault, 0, x509.RSA, 2048},
		{"rsa 3072", provider.KeyAlgorithmRSA, 3072, x509.RSA, 3072},
		{"ecdsa default curve", provider.KeyAlgorithmECDSA, 0, x509.ECDSA, 256},
		{"ecdsa p384", provider.KeyAlgorithmECDSA, 384, x509.ECDSA, 384},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := issue(t, ca, &provider.IssueRequest{CommonName: "cpvm-1", KeyAlgorithm: tc.alg, KeySize: tc.size, Role: provider.RoleClient})
			require.NotNil(t, res.PrivateKey)
			assert.Equal(t, tc.want, res.Certificate.PublicKeyAlgorithm)
			assert.True(t, sameKey(res.PrivateKey.Public(), res.Certificate.PublicKey))
			assert.Equal(t, tc.bits, keyBits(res.Certificate.PublicKey))
		})
	}
	_, err := ca.Issue(context.Background(), &provider.IssueRequest{CommonName: "x", KeyAlgorithm: provider.KeyAlgorithmRSA, KeySize: 1024, Role: provider.RoleHost})
	assert.ErrorIs(t, err, provider.ErrInvalidRequest)
}

// sha1CSR builds a CSR signed with SHA-1, which crypto/x509 refuses to
// create.
func sha1CSR(t *testing.T) []byte {
	t.Helper()
	key := genKey(t, "rsa2048")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "sha1.example.org"}}, key)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	// Re-sign the same TBS with SHA-1.
	sum := sha1Sum(csr.RawTBSCertificateRequest)
	sig, err := key.Sign(rand.Reader, sum, cryptoSHA1)
	require.NoError(t, err)
	out, err := asn1.Marshal(struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}{
		TBS: asn1.RawValue{FullBytes: csr.RawTBSCertificateRequest},
		Alg: pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, Parameters: asn1.NullRawValue},
		Sig: asn1.BitString{Bytes: sig, BitLength: len(sig) * 8},
	})
	require.NoError(t, err)
	return out
}

// caTrueCSR builds a CSR whose extension request asks for CA:TRUE.
func caTrueCSR(t *testing.T) []byte {
	t.Helper()
	bc, err := asn1.Marshal(struct{ IsCA bool }{true})
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: "evil.example.org"},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}},
	}, genKey(t, "p256"))
	require.NoError(t, err)
	return der
}

func TestIssueRefusals(t *testing.T) {
	// Lax about CSR names, to reach the reserved-names refusals.
	ca, store := newCA(t, &rootca.Options{InsecureAllowCSRNames: true, ReservedDNSNames: []string{"cloudstack.internal", "*.mgmt.internal"}})
	ctx := context.Background()
	p256 := genKey(t, "p256")
	good := makeCSR(t, p256, "kvm1.example.org", nil, nil)
	block, _ := pem.Decode(good)
	badSig := append([]byte(nil), block.Bytes...)
	badSig[len(badSig)-5] ^= 0xff
	manyNames := make([]string, 10000)
	for i := range manyNames {
		manyNames[i] = fmt.Sprintf("h%d.example.org", i)
	}

	tests := []struct {
		name  string
		req   *provider.IssueRequest
		field string
	}{
		{"no role", &provider.IssueRequest{CSR: good}, "role"},
		{"unknown role", &provider.IssueRequest{CSR: good, Role: 7}, "role"},
		{"empty CSR PEM", &provider.IssueRequest{CSR: []byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"), Role: provider.RoleHost}, "csr"},
		{"truncated DER", &provider.IssueRequest{CSR: block.Bytes[:len(block.Bytes)/2], Role: provider.RoleHost}, "csr"},
		{"garbage", &provider.IssueRequest{CSR: []byte("hello, CA"), Role: provider.RoleHost}, "csr"},
		{"certificate instead of CSR", &provider.IssueRequest{CSR: provider.EncodeCertificates(ca.Certificate()), Role: provider.RoleHost}, "csr"},
		{"bad signature", &provider.IssueRequest{CSR: badSig, Role: provider.RoleHost}, "csr"},
		{"RSA-1024", &provider.IssueRequest{CSR: makeCSR(t, genKey(t, "rsa1024"), "weak.example.org", nil, nil), Role: provider.RoleHost}, "csr"},
		{"P-224", &provider.IssueRequest{CSR: makeCSR(t, genKey(t, "p224"), "odd.example.org", nil, nil), Role: provider.RoleHost}, "csr"},
		{"SHA-1 signature", &provider.IssueRequest{CSR: sha1CSR(t), Role: provider.RoleHost}, "csr"},
		{"CA:TRUE", &provider.IssueRequest{CSR: caTrueCSR(t), Role: provider.RoleHost}, "csr"},
		{"10000 SANs in request", &provider.IssueRequest{CSR: good, DNSNames: manyNames, Role: provider.RoleHost}, "names"},
		{"NUL in DNS name", &provider.IssueRequest{CSR: good, DNSNames: []string{"kvm1\x00.evil.org"}, Role: provider.RoleHost}, "dns"},
		{"NUL in CSR common name", &provider.IssueRequest{CSR: makeCSR(t, p256, "kvm1\x00evil", nil, nil), Role: provider.RoleHost}, "csr common name"},
		{"wildcard", &provider.IssueRequest{CSR: good, DNSNames: []string{"*.example.org"}, Role: provider.RoleHost}, "dns"},
		{"label too long", &provider.IssueRequest{CSR: good, DNSNames: []string{strings.Repeat("a", 64) + ".org"}, Role: provider.RoleHost}, "dns"},
		// Go matches such a DNS name against the address, GnuTLS does
		// not: an address belongs in IPAddresses (issue 11, item 9).
		{"IP literal as DNS name", &provider.IssueRequest{CSR: good, DNSNames: []string{"10.0.0.9"}, Role: provider.RoleHost}, "dns"},
		{"short IPv4 form as DNS name", &provider.IssueRequest{CSR: good, DNSNames: []string{"10.9"}, Role: provider.RoleHost}, "dns"},
		{"IP literal as CSR DNS name", &provider.IssueRequest{CSR: makeCSR(t, p256, "kvm1", []string{"10.0.0.9"}, nil), DNSNames: []string{"10.0.0.9"}, Role: provider.RoleHost}, "dns"},
		{"IP literal as CSR DNS name, not vouched for", &provider.IssueRequest{CSR: makeCSR(t, p256, "kvm1", []string{"10.0.0.9"}, nil), Role: provider.RoleHost}, "csr dns"},
		{"unspecified IP", &provider.IssueRequest{CSR: good, IPAddresses: []net.IP{net.IPv4zero}, Role: provider.RoleHost}, "ip"},
		{"multicast IP in CSR", &provider.IssueRequest{CSR: makeCSR(t, p256, "", nil, []net.IP{net.ParseIP("ff02::1")}), Role: provider.RoleHost}, "csr ip"},
		{"reserved name in CSR", &provider.IssueRequest{CSR: makeCSR(t, p256, "kvm1", []string{"cloudstack.internal"}, nil), Role: provider.RoleHost}, "csr"},
		{"reserved wildcard in CSR CN", &provider.IssueRequest{CSR: makeCSR(t, p256, "ms1.mgmt.internal", nil, nil), Role: provider.RoleHost}, "csr"},
		{"no names at all", &provider.IssueRequest{CSR: makeCSR(t, p256, "", nil, nil), Role: provider.RoleHost}, "names"},
		{"validity beyond the CA", &provider.IssueRequest{CSR: good, Validity: 200 * 365 * 24 * time.Hour, Role: provider.RoleHost}, "validity"},
		{"validity beyond the maximum", &provider.IssueRequest{CSR: good, Validity: 4 * 365 * 24 * time.Hour, Role: provider.RoleHost}, "validity"},
		{"negative validity", &provider.IssueRequest{CSR: good, Validity: -time.Hour, Role: provider.RoleHost}, "validity"},
		{"long common name", &provider.IssueRequest{CSR: good, CommonName: strings.Repeat("a", 65), Role: provider.RoleHost}, "common name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.Issue(ctx, tc.req)
			require.Error(t, err)
			assert.ErrorIs(t, err, provider.ErrInvalidRequest)
			var re *provider.RequestError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, tc.field, re.Field, "error: %v", err)
			recs, err := store.ListCertificates(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, recs, "a refused request must change no state")
		})
	}

	// The platform may use a reserved name itself.
	res := issue(t, ca, &provider.IssueRequest{CSR: good, DNSNames: []string{"cloudstack.internal"}, Role: provider.RoleServer})
	assert.Contains(t, res.Certificate.DNSNames, "cloudstack.internal")
}

func TestIssueNamesPolicy(t *testing.T) {
	key := genKey(t, "p256")
	csr := makeCSR(t, key, "KVM1.Example.Org", []string{"kvm1.example.org", "kvm2.example.org"}, []net.IP{net.ParseIP("10.0.0.5"), net.ParseIP("10.0.0.99")})
	req := &provider.IssueRequest{
		CSR:         csr,
		DNSNames:    []string{"kvm1", "kvm1.example.org"},
		IPAddresses: []net.IP{net.ParseIP("10.0.0.5"), net.ParseIP("2001:db8::5")},
		Role:        provider.RoleHost,
	}
	tests := []struct {
		name    string
		lax     bool
		wantDNS []string
		wantIPs []string
	}{
		// The CSR's kvm2 and 10.0.0.99 are nobody's word but the
		// requester's: another host's name stays out.
		{"vouched names only", false, []string{"kvm1", "kvm1.example.org"}, []string{"10.0.0.5", "2001:db8::5"}},
		{"InsecureAllowCSRNames", true, []string{"kvm1", "kvm1.example.org", "kvm2.example.org"}, []string{"10.0.0.5", "2001:db8::5", "10.0.0.99"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ca, _ := newCA(t, &rootca.Options{InsecureAllowCSRNames: tc.lax})
			c := issue(t, ca, req).Certificate
			// Duplicates collapse, names are lower-cased, the CN is
			// among the SANs.
			assert.Equal(t, tc.wantDNS, c.DNSNames)
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			assert.Equal(t, tc.wantIPs, ips)
			assert.Equal(t, "KVM1.Example.Org", c.Subject.CommonName, "the CSR's CN is vouched for (case aside)")
			assert.Empty(t, c.Subject.Organization, "CSR subject attributes other than CN are dropped")
		})
	}

	ca, _ := newCA(t, nil)
	// A CSR CN nobody vouches for is left out, and the platform's first
	// name takes its place.
	c := issue(t, ca, &provider.IssueRequest{CSR: makeCSR(t, key, "evil.example.org", nil, nil), DNSNames: []string{"kvm3"}, Role: provider.RoleHost}).Certificate
	assert.Equal(t, "kvm3", c.Subject.CommonName)
	assert.Equal(t, []string{"kvm3"}, c.DNSNames)
	// With nothing vouched for, nothing is issued.
	_, err := ca.Issue(context.Background(), &provider.IssueRequest{CSR: makeCSR(t, key, "evil.example.org", []string{"kvm9"}, nil), Role: provider.RoleHost})
	assert.ErrorIs(t, err, provider.ErrInvalidRequest)
	// Malformed CSR names are refused even when they would be left out.
	_, err = ca.Issue(context.Background(), &provider.IssueRequest{CSR: makeCSR(t, key, "kvm3", []string{"bad_name"}, nil), DNSNames: []string{"kvm3"}, Role: provider.RoleHost})
	assert.ErrorIs(t, err, provider.ErrInvalidRequest)

	// An IP common name lands in the IP SANs.
	res := issue(t, ca, &provider.IssueRequest{CommonName: "192.0.2.7", Role: provider.RoleClient, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	require.Len(t, res.Certificate.IPAddresses, 1)
	assert.Equal(t, "192.0.2.7", res.Certificate.IPAddresses[0].String())
}

func TestIssueUniqueSerialsConcurrently(t *testing.T) {
	ca, store := newCA(t, nil)
	ctx := context.Background()
	csr := makeCSR(t, genKey(t, "p256"), "kvm.example.org", nil, nil)
	names := []string{"kvm.example.org"}
	const workers, each = 8, 25
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			for i := 0; i < each; i++ {
				res, err := ca.Issue(ctx, &provider.IssueRequest{CSR: csr, DNSNames: names, Role: provider.RoleHost})
				if err != nil {
					errs <- err
					return
				}
				if i%5 == 0 {
					if err := ca.Revoke(ctx, &provider.RevokeRequest{Serial: res.Certificate.SerialNumber}); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < workers; w++ {
		require.NoError(t, <-errs)
	}
	recs, err := store.ListCertificates(ctx, nil)
	require.NoError(t, err)
	require.Len(t, recs, workers*each)
	seen := map[string]bool{}
	for _, r := range recs {
		assert.False(t, seen[r.Serial.String()], "duplicate serial")
		seen[r.Serial.String()] = true
	}
}

func TestIssueDefaultValidityEndsWithCA(t *testing.T) {
	ca, _ := newCACreate(t, &rootca.CreateOptions{Validity: 30 * 24 * time.Hour})
	res := issue(t, ca, &provider.IssueRequest{CommonName: "kvm1", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	assert.Equal(t, ca.Certificate().NotAfter, res.Certificate.NotAfter)
	_, err := ca.Issue(context.Background(), &provider.IssueRequest{CommonName: "kvm1", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA, Validity: 60 * 24 * time.Hour})
	assert.ErrorIs(t, err, provider.ErrInvalidRequest)
}
