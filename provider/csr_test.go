package provider_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

var update = flag.Bool("update", false, "rewrite the CSRs in testdata/")

// csrFiles are the committed seed CSRs. Run
//
//	go test ./provider -run TestCSRTestdata -update
//
// to mint them afresh; the keys are thrown away.
var csrFiles = []struct {
	name    string
	file    string
	keyType string // "ecdsa" or "rsa"
	mint    func(t *testing.T) []byte
}{
	{name: "p256 pem", file: "csr-p256.pem", keyType: "ecdsa", mint: func(t *testing.T) []byte {
		return pemCSR("CERTIFICATE REQUEST", mintCSR(t, newP256(t)))
	}},
	{name: "rsa2048 pem", file: "csr-rsa2048.pem", keyType: "rsa", mint: func(t *testing.T) []byte {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		return pemCSR("CERTIFICATE REQUEST", mintCSR(t, key))
	}},
	{name: "keytool pem", file: "csr-keytool.pem", keyType: "ecdsa", mint: func(t *testing.T) []byte {
		return pemCSR("NEW CERTIFICATE REQUEST", mintCSR(t, newP256(t)))
	}},
	{name: "p256 der", file: "csr-der.der", keyType: "ecdsa", mint: func(t *testing.T) []byte {
		return mintCSR(t, newP256(t))
	}},
}

// The names every seed CSR requests.
var (
	csrCommonName = "kvm1.example.test"
	csrDNSNames   = []string{"kvm1.example.test", "kvm1"}
	csrIPs        = []net.IP{net.ParseIP("192.0.2.10").To4(), net.ParseIP("2001:db8::10")}
)

func newP256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return key
}

func mintCSR(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: csrCommonName, Organization: []string{"kvmpki test"}},
		DNSNames:    csrDNSNames,
		IPAddresses: csrIPs,
	}, key)
	require.NoError(t, err)
	return der
}

func pemCSR(blockType string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
}

func TestCSRTestdata(t *testing.T) {
	for _, tc := range csrFiles {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			if *update {
				require.NoError(t, os.WriteFile(path, tc.mint(t), 0o644))
			}
			data, err := os.ReadFile(path)
			require.NoError(t, err, "run with -update to create it")
			csr, err := provider.ParseCSR(data)
			require.NoError(t, err)
			assert.NoError(t, csr.CheckSignature())
			assert.Equal(t, csrCommonName, csr.Subject.CommonName)
			assert.Equal(t, csrDNSNames, csr.DNSNames)
			require.Len(t, csr.IPAddresses, len(csrIPs))
			for i, ip := range csrIPs {
				assert.True(t, ip.Equal(csr.IPAddresses[i]), "ip %d", i)
			}
			switch tc.keyType {
			case "ecdsa":
				assert.IsType(t, &ecdsa.PublicKey{}, csr.PublicKey)
			case "rsa":
				require.IsType(t, &rsa.PublicKey{}, csr.PublicKey)
				assert.Equal(t, 2048, csr.PublicKey.(*rsa.PublicKey).N.BitLen())
			}
		})
	}
}

func TestParseCSR(t *testing.T) {
	der := mintCSR(t, newP256(t))
	p := pemCSR("CERTIFICATE REQUEST", der)
	tests := []struct {
		name string
		data []byte
	}{
		{name: "der", data: der},
		{name: "pem", data: p},
		{name: "keytool pem", data: pemCSR("NEW CERTIFICATE REQUEST", der)},
		{name: "pem with preamble", data: append([]byte("Subject: CN=kvm1\n"), p...)},
		{name: "pem with crlf", data: bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))},
		{name: "pem then a second block", data: append(append([]byte{}, p...), pemCSR("CERTIFICATE", []byte{0x30, 0})...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := provider.ParseCSR(tc.data)
			require.NoError(t, err)
			require.NotNil(t, csr)
			assert.Equal(t, der, csr.Raw)
		})
	}
}

func TestParseCSRRefused(t *testing.T) {
	der := mintCSR(t, newP256(t))
	cert := newTestPKI(t).cert
	tests := []struct {
		name   string
		data   []byte
		reason string // substring of the error
	}{
		{name: "nil", data: nil, reason: "empty"},
		{name: "empty", data: []byte{}, reason: "empty"},
		{name: "oversize der", data: append(append([]byte{}, der...), make([]byte, provider.MaxCSRSize)...), reason: "exceeds the limit"},
		{name: "oversize pem", data: pemCSR("CERTIFICATE REQUEST", make([]byte, provider.MaxCSRSize)), reason: "exceeds the limit"},
		{name: "certificate pem", data: pemCSR("CERTIFICATE", cert.Raw), reason: `PEM block type "CERTIFICATE"`},
		{name: "private key pem", data: pemCSR("PRIVATE KEY", []byte("secret")), reason: `PEM block type "PRIVATE KEY"`},
		{name: "certificate der", data: cert.Raw, reason: "malformed"},
		{name: "garbage text", data: []byte("hello, world"), reason: "neither PEM nor DER"},
		{name: "garbage binary", data: []byte{0xff, 0x00, 0x13}, reason: "neither PEM nor DER"},
		{name: "truncated der", data: der[:len(der)/2], reason: "malformed"},
		{name: "der with trailing data", data: append(append([]byte{}, der...), 0), reason: "malformed"},
		{name: "truncated pem", data: pemCSR("CERTIFICATE REQUEST", der)[:100], reason: "malformed PEM"},
		{name: "pem with truncated der", data: pemCSR("CERTIFICATE REQUEST", der[:len(der)-1]), reason: "malformed"},
		{name: "empty sequence", data: []byte{0x30, 0x00}, reason: "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := provider.ParseCSR(tc.data)
			require.Error(t, err)
			assert.Nil(t, csr)
			assert.ErrorIs(t, err, provider.ErrInvalidRequest)
			var re *provider.RequestError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, "csr", re.Field)
			assert.Contains(t, err.Error(), tc.reason)
			// Messages name PEM block types, never their contents.
			assert.NotContains(t, err.Error(), "secret")
		})
	}
}

// TestParseCSRPrefixes checks that no proper prefix of a valid CSR parses,
// except the PEM form without its final newline.
func TestParseCSRPrefixes(t *testing.T) {
	der := mintCSR(t, newP256(t))
	p := pemCSR("CERTIFICATE REQUEST", der)
	for _, data := range [][]byte{der, p[:len(p)-1]} {
		for i := 1; i < len(data); i++ {
			_, err := provider.ParseCSR(data[:i])
			if !assert.ErrorIs(t, err, provider.ErrInvalidRequest, "prefix of %d bytes", i) {
				return
			}
		}
	}
}

// addCSRSeeds adds the CSRs of testdata to f's corpus.
func addCSRSeeds(f *testing.F) {
	entries, err := os.ReadDir("testdata")
	require.NoError(f, err)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "csr-") {
			data, err := os.ReadFile(filepath.Join("testdata", e.Name()))
			require.NoError(f, err)
			f.Add(data)
		}
	}
}

func FuzzParseCSR(f *testing.F) {
	addCSRSeeds(f)
	f.Add([]byte{})
	f.Add([]byte{0x30})
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := provider.ParseCSR(data)
		if err != nil {
			require.ErrorIs(t, err, provider.ErrInvalidRequest)
			var re *provider.RequestError
			require.ErrorAs(t, err, &re)
			require.Nil(t, csr)
			return
		}
		require.NotNil(t, csr)
		require.LessOrEqual(t, len(data), provider.MaxCSRSize)
		// An accepted CSR re-encodes as the DER it was parsed from.
		again, err := x509.ParseCertificateRequest(csr.Raw)
		require.NoError(t, err)
		require.Equal(t, csr.Raw, again.Raw)
	})
}
