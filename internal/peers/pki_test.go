package peers

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPKCS8Key(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	rsaKey := f.host.key.(*rsa.PrivateKey)
	ecKey := f.ecdsaDSOnly.key.(*ecdsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	require.NoError(t, err)

	tests := []struct {
		name    string
		key     []byte
		want    any
		wantErr string
	}{
		{name: "PKCS #8 RSA", key: f.host.keyPEM, want: rsaKey},
		{name: "PKCS #1 RSA", key: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), want: rsaKey},
		{name: "SEC 1 EC", key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), want: ecKey},
		{name: "key after a certificate", key: append(append([]byte{}, f.host.pem...), f.host.keyPEM...), want: rsaKey},
		{name: "no key", key: f.host.pem, wantErr: "peers: Key holds no PEM private key"},
		{name: "corrupt PKCS #8", key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), wantErr: "peers: parsing PRIVATE KEY block"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			der, err := PKI{Key: tc.key}.pkcs8Key()
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			got, err := x509.ParsePKCS8PrivateKey(der)
			require.NoError(t, err)
			assert.True(t, tc.want.(interface{ Equal(crypto.PrivateKey) bool }).Equal(got))
		})
	}
}

func TestCRLPEM(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	asPEM := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: f.crlEmpty})
	tests := []struct {
		name string
		in   []byte
		want []byte
	}{
		{name: "nil", in: nil, want: nil},
		{name: "DER", in: f.crlEmpty, want: asPEM},
		{name: "PEM", in: asPEM, want: asPEM},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, crlPEM(tc.in))
		})
	}
}

func TestClientTLSConfig(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	tests := []struct {
		name      string
		pki       PKI
		wantCerts int
		wantErr   string
	}{
		{name: "trust and identity", pki: f.good(), wantCerts: 1},
		{name: "trust only", pki: PKI{CACert: f.ca.pem}},
		{name: "no CA", pki: PKI{Cert: f.host.pem, Key: f.host.keyPEM}, wantErr: "peers: CACert holds no PEM certificate"},
		{name: "key of another cert", pki: PKI{CACert: f.ca.pem, Cert: f.host.pem, Key: f.revoked.keyPEM}, wantErr: "peers: loading Cert and Key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.pki.ClientTLSConfig("localhost")
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "localhost", cfg.ServerName)
			assert.Len(t, cfg.Certificates, tc.wantCerts)
		})
	}
}

func TestWriteFilesModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, writeFiles(dir,
		fileSpec{name: "cert.pem", data: []byte("c")},
		fileSpec{name: "key.pem", data: []byte("k"), secret: true},
	))
	tests := []struct {
		name string
		file string
		mask os.FileMode // the umask may clear group and other bits
		want os.FileMode
	}{
		{name: "certificate", file: "cert.pem", mask: 0o700, want: 0o600},
		{name: "private key", file: "key.pem", mask: 0o777, want: 0o600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fi, err := os.Stat(filepath.Join(dir, tc.file))
			require.NoError(t, err)
			assert.Equal(t, tc.want, fi.Mode().Perm()&tc.mask)
		})
	}
	assert.Error(t, writeFiles(dir, fileSpec{name: "key.pem", data: []byte("x")}), "existing files are not overwritten")
}
