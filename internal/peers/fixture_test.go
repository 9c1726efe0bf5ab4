package peers

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCA is a CA minted in code for these tests.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

// newTestCA mints a self-signed root: basicConstraints CA:TRUE critical,
// keyUsage certSign|cRLSign.
func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"kvmpki peers test"}, CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key, pem: pemCert(der)}
}

// leafSpec describes a leaf to issue.
type leafSpec struct {
	ecdsa    bool          // ECDSA P-256 instead of RSA-2048
	keyUsage x509.KeyUsage // 0 omits the extension
	isCA     bool          // an intermediate CA instead of a leaf
	noIPSAN  bool          // leave out IP:127.0.0.1
	subject  pkix.Name
}

// hostLeaf is the portable host profile of x509-profiles.md §5: RSA-2048,
// KU digitalSignature|keyEncipherment, EKU serverAuth+clientAuth.
var hostLeaf = leafSpec{
	keyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	subject:  pkix.Name{Organization: []string{"Test"}, CommonName: "localhost"},
}

// issued is a certificate issued by a testCA.
type issued struct {
	cert   *x509.Certificate
	key    crypto.Signer
	pem    []byte
	keyPEM []byte // PKCS #8
}

// issue mints a certificate under ca. Leaves get SAN DNS:localhost and
// IP:127.0.0.1 and an explicit SubjectKeyId.
func (ca *testCA) issue(t testing.TB, spec leafSpec) *issued {
	t.Helper()
	var key crypto.Signer
	var err error
	if spec.ecdsa {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	require.NoError(t, err)
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	require.NoError(t, err)
	ski := sha256.Sum256(pub)
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	require.NoError(t, err)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               spec.subject,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(12 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  spec.isCA,
		KeyUsage:              spec.keyUsage,
		SubjectKeyId:          ski[:20],
	}
	if !spec.isCA {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{"localhost"}
		if !spec.noIPSAN {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return &issued{cert: cert, key: key, pem: pemCert(der),
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})}
}

// asCA turns an issued intermediate into a testCA.
func (c *issued) asCA() *testCA {
	return &testCA{cert: c.cert, key: c.key, pem: c.pem}
}

// crl returns a DER CRL of ca revoking serials.
func (ca *testCA) crl(t testing.TB, serials ...*big.Int) []byte {
	t.Helper()
	now := time.Now()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(now.UnixNano()),
		ThisUpdate: now.Add(-time.Minute),
		NextUpdate: now.Add(time.Hour),
	}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	require.NoError(t, err)
	return der
}

// fixture is the PKI shared by the tests of this package.
type fixture struct {
	ca, foreignCA *testCA
	host          *issued // hostLeaf under ca
	foreignHost   *issued // hostLeaf under foreignCA
	revoked       *issued // hostLeaf under ca, revoked by crlRevoking
	ecdsaDSOnly   *issued // ECDSA, critical KU digitalSignature only
	caLeaf        *issued // a CA:TRUE "leaf", refused by GnuTLS as a server
	dnsOnly       *issued // ECDSA without KU, SAN DNS:localhost only
	inter         *testCA // intermediate under ca
	interLeaf     *issued // ECDSA leaf without KU under inter
	crlRevoking   []byte  // DER CRL of ca revoking revoked
	crlEmpty      []byte  // DER CRL of ca revoking nothing
}

var fixtureOnce sync.Once
var sharedFixture *fixture

// getFixture mints the shared PKI once per test binary.
func getFixture(t testing.TB) *fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		f := &fixture{ca: newTestCA(t, "peers test CA"), foreignCA: newTestCA(t, "foreign CA")}
		f.host = f.ca.issue(t, hostLeaf)
		f.foreignHost = f.foreignCA.issue(t, hostLeaf)
		f.revoked = f.ca.issue(t, hostLeaf)
		f.ecdsaDSOnly = f.ca.issue(t, leafSpec{ecdsa: true, keyUsage: x509.KeyUsageDigitalSignature,
			subject: pkix.Name{CommonName: "ecdsa-ds-only"}})
		f.caLeaf = f.ca.issue(t, leafSpec{ecdsa: true, isCA: true,
			keyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			subject:  pkix.Name{CommonName: "localhost"}})
		f.dnsOnly = f.ca.issue(t, leafSpec{ecdsa: true, noIPSAN: true, subject: pkix.Name{CommonName: "localhost"}})
		f.inter = f.ca.issue(t, leafSpec{ecdsa: true, isCA: true,
			keyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			subject:  pkix.Name{CommonName: "peers test intermediate"}}).asCA()
		f.interLeaf = f.inter.issue(t, leafSpec{ecdsa: true, subject: pkix.Name{CommonName: "localhost"}})
		f.crlRevoking = f.ca.crl(t, f.revoked.cert.SerialNumber)
		f.crlEmpty = f.ca.crl(t)
		sharedFixture = f
	})
	require.NotNil(t, sharedFixture, "fixture minting failed in another test")
	return sharedFixture
}

// pki returns the PKI of a party holding leaf and trusting ca.
func pkiOf(ca *testCA, leaf *issued) PKI {
	return PKI{CACert: ca.pem, Cert: leaf.pem, Key: leaf.keyPEM}
}

// good is the host identity trusted by the test CA.
func (f *fixture) good() PKI { return pkiOf(f.ca, f.host) }

// foreign is an identity from the foreign CA that trusts the test CA, so
// that it accepts a good server but is itself refused.
func (f *fixture) foreign() PKI { return pkiOf(f.ca, f.foreignHost) }
