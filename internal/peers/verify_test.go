package peers

import (
	"encoding/pem"
	"testing"

	"github.com/stretchr/testify/assert"
)

// verifyCase is one chain check, run against OpenSSL and certtool.
type verifyCase struct {
	name    string
	pki     PKI
	opts    VerifyOptions
	openssl string // expected error text from OpenSSL; "" = accepted
	gnutls  string // expected error text from certtool; "" = accepted
}

func verifyCases(f *fixture) []verifyCase {
	chain := append(append([]byte{}, f.interLeaf.pem...), f.inter.pem...)
	return []verifyCase{
		{name: "host cert as server", pki: f.good(), opts: VerifyOptions{Purpose: PurposeServer}},
		{name: "host cert as client", pki: f.good(), opts: VerifyOptions{Purpose: PurposeClient}},
		{name: "host name", pki: f.good(), opts: VerifyOptions{Purpose: PurposeServer, Hostname: "localhost"}},
		{name: "IP address", pki: f.good(), opts: VerifyOptions{Hostname: "127.0.0.1"}},
		{name: "x509 strict", pki: f.good(), opts: VerifyOptions{Strict: true}},
		{name: "chain through an intermediate", pki: PKI{CACert: f.ca.pem, Cert: chain}, opts: VerifyOptions{Purpose: PurposeServer}},
		{name: "CRL without the leaf", pki: PKI{CACert: f.ca.pem, Cert: f.host.pem, CRL: f.crlRevoking}},
		{
			name:    "wrong host name",
			pki:     f.good(),
			opts:    VerifyOptions{Hostname: "other.example"},
			openssl: "hostname mismatch",
			gnutls:  "The name in the certificate does not match the expected",
		},
		{
			name:    "foreign CA",
			pki:     PKI{CACert: f.ca.pem, Cert: f.foreignHost.pem},
			openssl: "unable to get local issuer certificate",
			gnutls:  "The certificate issuer is unknown",
		},
		{
			name:    "intermediate missing",
			pki:     PKI{CACert: f.ca.pem, Cert: f.interLeaf.pem},
			openssl: "unable to get local issuer certificate",
			gnutls:  "The certificate issuer is unknown",
		},
		{
			name:    "revoked by DER CRL",
			pki:     PKI{CACert: f.ca.pem, Cert: f.revoked.pem, CRL: f.crlRevoking},
			openssl: "certificate revoked",
			gnutls:  "The certificate chain is revoked",
		},
		{
			name:    "revoked by PEM CRL",
			pki:     PKI{CACert: f.ca.pem, Cert: f.revoked.pem, CRL: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: f.crlRevoking})},
			openssl: "certificate revoked",
			gnutls:  "The certificate chain is revoked",
		},
	}
}

func TestOpenSSLVerify(t *testing.T) {
	t.Parallel()
	Require(t, "openssl")
	f := getFixture(t)
	for _, tc := range verifyCases(f) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := OpenSSLVerify(t, tc.pki, tc.opts)
			if tc.openssl == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.openssl)
			}
		})
	}
}

func TestCerttoolVerify(t *testing.T) {
	t.Parallel()
	Require(t, "certtool")
	f := getFixture(t)
	for _, tc := range verifyCases(f) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CerttoolVerify(t, tc.pki, tc.opts)
			if tc.gnutls == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.gnutls)
			}
		})
	}
}

func TestOpenSSLVerifyCRL(t *testing.T) {
	t.Parallel()
	Require(t, "openssl")
	f := getFixture(t)
	tests := []struct {
		name    string
		ca      []byte
		crl     []byte
		wantErr string
	}{
		{name: "DER", ca: f.ca.pem, crl: f.crlRevoking},
		{name: "PEM", ca: f.ca.pem, crl: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: f.crlEmpty})},
		{name: "CA bundle", ca: append(append([]byte{}, f.foreignCA.pem...), f.ca.pem...), crl: f.crlEmpty},
		{name: "foreign CA", ca: f.foreignCA.pem, crl: f.crlEmpty, wantErr: "CRL issuer certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := OpenSSLVerifyCRL(t, tc.ca, tc.crl)
			if tc.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.wantErr)
			}
		})
	}
}
