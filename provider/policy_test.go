package provider_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

func TestCheckDNSName(t *testing.T) {
	tests := []struct {
		name, in, want, err string
	}{
		{name: "host name", in: "kvm1.example.org", want: "kvm1.example.org"},
		{name: "lower-cased", in: "KVM1.Example.ORG", want: "kvm1.example.org"},
		{name: "single label", in: "kvm1", want: "kvm1"},
		{name: "numeric first label", in: "1.example.org", want: "1.example.org"},
		{name: "hyphen inside", in: "kvm-1.example.org", want: "kvm-1.example.org"},
		{name: "ipv4 literal", in: "10.0.0.9", err: "is an IP address"},
		{name: "short ipv4 form", in: "10.9", err: "numeric label"},
		{name: "decimal ipv4 form", in: "167772169", err: "numeric label"},
		{name: "numeric last label", in: "kvm1.123", err: "numeric label"},
		{name: "ipv6 literal", in: "2001:db8::1", err: "character ':'"},
		{name: "bracketed ipv6", in: "[::1]", err: "character '['"},
		{name: "wildcard", in: "*.example.org", err: "character '*'"},
		{name: "empty", in: "", err: "empty"},
		{name: "empty label", in: "a..b", err: "empty label"},
		{name: "trailing dot", in: "example.org.", err: "ends with a dot"},
		{name: "leading hyphen", in: "-a.example", err: "hyphen"},
		{name: "NUL", in: "evil\x00.example.org", err: "character"},
		{name: "long label", in: strings.Repeat("a", 64) + ".example", err: "longer than 63"},
		{name: "too long", in: strings.Repeat("a.", 127) + "ab", err: "longer than 253"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := provider.CheckDNSName(tc.in)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCheckIPAddress(t *testing.T) {
	tests := []struct {
		name string
		ip   net.IP
		err  string
	}{
		{name: "ipv4", ip: net.ParseIP("192.0.2.1")},
		{name: "ipv4 in 4 bytes", ip: net.ParseIP("192.0.2.1").To4()},
		{name: "ipv6", ip: net.ParseIP("2001:db8::1")},
		{name: "unspecified", ip: net.IPv4zero, err: "unspecified"},
		{name: "ipv6 unspecified", ip: net.IPv6unspecified, err: "unspecified"},
		{name: "multicast", ip: net.ParseIP("224.0.0.1"), err: "multicast"},
		{name: "broadcast", ip: net.IPv4bcast, err: "broadcast"},
		{name: "malformed", ip: net.IP{1, 2, 3}, err: "3 bytes"},
		{name: "nil", ip: nil, err: "0 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := provider.CheckIPAddress(tc.ip)
			if tc.err == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

func TestCheckIssueRequest(t *testing.T) {
	valid := func() *provider.IssueRequest {
		return &provider.IssueRequest{
			DNSNames:    []string{"kvm1.example.org"},
			IPAddresses: []net.IP{net.ParseIP("192.0.2.1")},
			Role:        provider.RoleHost,
		}
	}
	many := make([]string, 101)
	for i := range many {
		many[i] = "h" + strings.Repeat("x", i%5) + ".example.org"
	}
	tests := []struct {
		name   string
		edit   func(*provider.IssueRequest)
		policy *provider.CSRPolicy
		field  string // empty when the request passes
	}{
		{name: "valid", edit: func(*provider.IssueRequest) {}},
		{name: "ip literal common name", edit: func(r *provider.IssueRequest) { r.CommonName = "192.0.2.1" }},
		{name: "ip literal as DNS name", edit: func(r *provider.IssueRequest) { r.DNSNames = append(r.DNSNames, "10.0.0.9") }, field: "dns"},
		{name: "ipv6 literal as DNS name", edit: func(r *provider.IssueRequest) { r.DNSNames = []string{"2001:db8::9"} }, field: "dns"},
		{name: "no role", edit: func(r *provider.IssueRequest) { r.Role = provider.RoleUnspecified }, field: "role"},
		{name: "negative validity", edit: func(r *provider.IssueRequest) { r.Validity = -time.Hour }, field: "validity"},
		{name: "negative max validity", edit: func(r *provider.IssueRequest) { r.MaxValidity = -time.Hour }, field: "max validity"},
		{name: "long common name", edit: func(r *provider.IssueRequest) { r.CommonName = strings.Repeat("a", 65) }, field: "common name"},
		{name: "malformed common name", edit: func(r *provider.IssueRequest) { r.CommonName = "kvm 1" }, field: "common name"},
		{name: "multicast address", edit: func(r *provider.IssueRequest) { r.IPAddresses = []net.IP{net.ParseIP("ff02::1")} }, field: "ip"},
		{name: "too many names", edit: func(r *provider.IssueRequest) { r.DNSNames = many }, field: "names"},
		{name: "policy limit", edit: func(*provider.IssueRequest) {}, policy: &provider.CSRPolicy{MaxNames: 1}, field: "names"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := valid()
			tc.edit(req)
			err := provider.CheckIssueRequest(req, tc.policy)
			if tc.field == "" {
				assert.NoError(t, err)
				return
			}
			assertRequestError(t, err, tc.field)
		})
	}
	assertRequestError(t, provider.CheckIssueRequest(nil, nil), "")
}

// assertRequestError asserts that err is a *RequestError for field.
func assertRequestError(t *testing.T, err error, field string) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, provider.ErrInvalidRequest)
	var re *provider.RequestError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, field, re.Field, "field of %v", err)
}

// csrWith returns a DER CSR for key after edit changed the template.
func csrWith(t *testing.T, key crypto.Signer, edit func(*x509.CertificateRequest)) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: csrCommonName},
		DNSNames:    csrDNSNames,
		IPAddresses: csrIPs,
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	return der
}

func TestCheckCSR(t *testing.T) {
	p256 := newP256(t)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	require.NoError(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	caTrue, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{IsCA: true})
	require.NoError(t, err)
	caFalse, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{})
	require.NoError(t, err)
	rsa2048, err := os.ReadFile(filepath.Join("testdata", "csr-rsa2048.pem"))
	require.NoError(t, err)
	badSig := csrWith(t, p256, nil)
	badSig[len(badSig)-1] ^= 1

	tests := []struct {
		name   string
		csr    []byte
		policy *provider.CSRPolicy
		field  string // empty when the CSR passes
		reason string
	}{
		{name: "valid", csr: csrWith(t, p256, nil)},
		{name: "rsa 2048", csr: rsa2048},
		{name: "CA:FALSE", csr: csrWith(t, p256, func(r *x509.CertificateRequest) {
			r.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Value: caFalse}}
		})},
		{name: "ip literal common name", csr: csrWith(t, p256, func(r *x509.CertificateRequest) { r.Subject.CommonName = "192.0.2.10" })},
		{name: "ip literal as DNS name", field: "csr dns", reason: "is an IP address", csr: csrWith(t, p256, func(r *x509.CertificateRequest) {
			r.DNSNames = append(r.DNSNames, "10.0.0.9")
		})},
		{name: "malformed common name", field: "csr common name", csr: csrWith(t, p256, func(r *x509.CertificateRequest) { r.Subject.CommonName = "kvm 1" })},
		{name: "multicast address", field: "csr ip", csr: csrWith(t, p256, func(r *x509.CertificateRequest) { r.IPAddresses = []net.IP{net.ParseIP("224.0.0.1")} })},
		{name: "bad signature", field: "csr", reason: "signature does not verify", csr: badSig},
		{name: "weak rsa", field: "csr", reason: "too weak", csr: csrWith(t, rsa1024, nil)},
		{name: "policy minimum", field: "csr", reason: "too weak", csr: rsa2048, policy: &provider.CSRPolicy{MinRSAKeySize: 3072}},
		{name: "p224", field: "csr", reason: "curve P-224", csr: csrWith(t, p224, nil)},
		{name: "ed25519", field: "csr", reason: "signature algorithm Ed25519", csr: csrWith(t, ed, nil)},
		{name: "CA:TRUE", field: "csr", reason: "CA:TRUE", csr: csrWith(t, p256, func(r *x509.CertificateRequest) {
			r.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caTrue}}
		})},
		{name: "malformed basic constraints", field: "csr", reason: "malformed basic constraints", csr: csrWith(t, p256, func(r *x509.CertificateRequest) {
			r.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Value: []byte{0x05, 0x00}}}
		})},
		{name: "e-mail name", field: "csr", reason: "e-mail or URI", csr: csrWith(t, p256, func(r *x509.CertificateRequest) { r.EmailAddresses = []string{"root@example.org"} })},
		{name: "URI name", field: "csr", reason: "e-mail or URI", csr: csrWith(t, p256, func(r *x509.CertificateRequest) {
			r.URIs = []*url.URL{{Scheme: "spiffe", Host: "example.org"}}
		})},
		{name: "too many names", field: "csr", reason: "exceed the limit of 3", csr: csrWith(t, p256, nil), policy: &provider.CSRPolicy{MaxNames: 3}},
		{name: "garbage", field: "csr", csr: []byte("garbage")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := provider.CheckCSR(tc.csr, tc.policy)
			if tc.field == "" {
				require.NoError(t, err)
				require.NotNil(t, csr)
				return
			}
			assert.Nil(t, csr)
			assertRequestError(t, err, tc.field)
			assert.Contains(t, err.Error(), tc.reason)
		})
	}
}

func TestCheckSignatureAlgorithm(t *testing.T) {
	for _, alg := range []x509.SignatureAlgorithm{x509.SHA256WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA256, x509.ECDSAWithSHA384} {
		assert.NoError(t, provider.CheckSignatureAlgorithm(alg), "%v", alg)
	}
	// CheckSignature accepts SHA-1 on a CSR; the policy must not.
	for _, alg := range []x509.SignatureAlgorithm{x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.MD5WithRSA, x509.DSAWithSHA256, x509.PureEd25519, x509.UnknownSignatureAlgorithm} {
		assert.Error(t, provider.CheckSignatureAlgorithm(alg), "%v", alg)
	}
}

func TestCheckPublicKey(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	smallE := rsaKey.PublicKey
	smallE.E = 3
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	tests := []struct {
		name   string
		pub    crypto.PublicKey
		policy *provider.CSRPolicy
		err    string
	}{
		{name: "rsa 2048", pub: &rsaKey.PublicKey},
		{name: "p384", pub: &p384.PublicKey},
		{name: "rsa exponent 3", pub: &smallE, err: "exponent 3"},
		{name: "rsa over the maximum", pub: &rsaKey.PublicKey, policy: &provider.CSRPolicy{MaxRSAKeySize: 1024, MinRSAKeySize: 512}, err: "too large"},
		{name: "ed25519", pub: edPub, err: "ed25519.PublicKey is not allowed"},
		{name: "ecdsa without curve", pub: &ecdsa.PublicKey{}, err: "without a curve"},
		{name: "nil", pub: nil, err: "no public key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := provider.CheckPublicKey(tc.pub, tc.policy)
			if tc.err == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

// FuzzCheckCSR: no panic; a refusal is a *RequestError; an accepted CSR
// has a verifying signature of an allowed algorithm and only names
// CheckDNSName and CheckIPAddress accept.
func FuzzCheckCSR(f *testing.F) {
	addCSRSeeds(f)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := provider.CheckCSR(data, nil)
		if err != nil {
			var re *provider.RequestError
			require.ErrorAs(t, err, &re)
			require.ErrorIs(t, err, provider.ErrInvalidRequest)
			require.Nil(t, csr)
			return
		}
		require.NoError(t, csr.CheckSignature())
		require.NoError(t, provider.CheckSignatureAlgorithm(csr.SignatureAlgorithm))
		for _, n := range csr.DNSNames {
			_, err := provider.CheckDNSName(n)
			require.NoError(t, err)
		}
		for _, ip := range csr.IPAddresses {
			require.NoError(t, provider.CheckIPAddress(ip))
		}
		require.Empty(t, csr.EmailAddresses)
		require.Empty(t, csr.URIs)
	})
}
