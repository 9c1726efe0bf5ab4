package pemx

import (
	"bytes"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func TestParseCertificates(t *testing.T) {
	cert := readTestdata(t, "cert.pem")
	many := bytes.Repeat(cert, MaxCertificates+1)
	tests := []struct {
		name    string
		data    []byte
		want    int
		wantErr error
		msg     string
	}{
		{name: "one", data: cert, want: 1},
		{name: "bound", data: bytes.Repeat(cert, MaxCertificates), want: MaxCertificates},
		{name: "over the bound", data: many, wantErr: ErrTooMany},
		{name: "empty", data: nil, wantErr: ErrNoBlock},
		{name: "a key among certificates", data: readTestdata(t, "cert-and-key.pem"), wantErr: ErrUnexpectedBlock, msg: `"PRIVATE KEY"`},
		{name: "truncated second block", data: append(append([]byte{}, cert...), cert[:len(cert)/2]...), wantErr: ErrUnexpectedBlock},
		{name: "garbage certificate", data: pem.EncodeToMemory(&pem.Block{Type: TypeCertificate, Bytes: []byte{0x30, 1, 2}}), msg: "certificate 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certs, err := ParseCertificates(tc.data)
			if tc.wantErr != nil || tc.msg != "" {
				require.Error(t, err)
				if tc.wantErr != nil {
					assert.ErrorIs(t, err, tc.wantErr)
				}
				assert.ErrorContains(t, err, tc.msg)
				return
			}
			require.NoError(t, err)
			assert.Len(t, certs, tc.want)
		})
	}
}

func TestParsePrivateKey(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		data    []byte
		wantErr error
		msg     string
	}{
		{name: "PKCS #8", file: "key-pkcs8.pem"},
		{name: "SEC 1", file: "key-sec1.pem"},
		{name: "PKCS #1", file: "key-pkcs1.pem"},
		{name: "certificate first", file: "cert-and-key.pem"},
		{name: "encrypted PKCS #8", file: "key-encrypted.pem", wantErr: ErrEncryptedKey, msg: "ENCRYPTED PRIVATE KEY block"},
		{name: "legacy encrypted", file: "key-legacy-encrypted.pem", wantErr: ErrEncryptedKey, msg: "RSA PRIVATE KEY block"},
		{name: "no key", file: "cert.pem", wantErr: ErrNoBlock},
		{name: "garbage key", data: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret-bytes")}), msg: "parsing the PRIVATE KEY block failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data
			if tc.file != "" {
				data = readTestdata(t, tc.file)
			}
			key, err := ParsePrivateKey(data)
			if tc.wantErr != nil || tc.msg != "" {
				require.Error(t, err)
				if tc.wantErr != nil {
					assert.ErrorIs(t, err, tc.wantErr)
				}
				assert.ErrorContains(t, err, tc.msg)
				assert.NotContains(t, err.Error(), "secret-bytes", "errors never quote key material")
				return
			}
			require.NoError(t, err)
			assert.NotNil(t, key.Public())
		})
	}
}

func TestParseCRLs(t *testing.T) {
	crl := readTestdata(t, "crl.pem")
	tests := []struct {
		name    string
		data    []byte
		want    int
		wantErr error
		msg     string
	}{
		{name: "PEM", data: crl, want: 1},
		{name: "DER", data: readTestdata(t, "crl.der"), want: 1},
		{name: "two PEM", data: append(append([]byte{}, crl...), crl...), want: 2},
		{name: "a key after the CRL", data: readTestdata(t, "crl-and-key.pem"), wantErr: ErrUnexpectedBlock, msg: `"PRIVATE KEY"`},
		{name: "a certificate", data: readTestdata(t, "cert.pem"), wantErr: ErrUnexpectedBlock, msg: `"CERTIFICATE"`},
		{name: "over the bound", data: bytes.Repeat(crl, MaxCRLs+1), wantErr: ErrTooMany},
		{name: "garbage", data: []byte("not a crl"), msg: "neither a PEM X509 CRL block nor a DER CRL"},
		{name: "broken PEM", data: []byte("-----BEGIN X509 CRL-----\n!!\n"), wantErr: ErrUnexpectedBlock},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			crls, err := ParseCRLs(tc.data)
			if tc.wantErr != nil || tc.msg != "" {
				require.Error(t, err)
				if tc.wantErr != nil {
					assert.ErrorIs(t, err, tc.wantErr)
				}
				assert.ErrorContains(t, err, tc.msg)
				return
			}
			require.NoError(t, err)
			assert.Len(t, crls, tc.want)
		})
	}
}

func TestParseKeyPair(t *testing.T) {
	cert := readTestdata(t, "cert.pem")
	chain, key, err := ParseKeyPair(cert, readTestdata(t, "key-pkcs8.pem"))
	require.NoError(t, err)
	assert.Len(t, chain, 1)
	assert.NotNil(t, key)
	_, _, err = ParseKeyPair(cert, readTestdata(t, "key-pkcs1.pem"))
	assert.ErrorIs(t, err, pkicore.ErrKeyMismatch)
	_, _, err = ParseKeyPair(cert, readTestdata(t, "key-encrypted.pem"))
	assert.ErrorIs(t, err, ErrEncryptedKey)
	_, _, err = ParseKeyPair(readTestdata(t, "cert-and-key.pem"), readTestdata(t, "key-pkcs8.pem"))
	assert.ErrorIs(t, err, ErrUnexpectedBlock)
}

func TestCRLPEM(t *testing.T) {
	crl := readTestdata(t, "crl.pem")
	assert.Equal(t, crl, CRLPEM(crl), "PEM stays as it is")
	got := CRLPEM(readTestdata(t, "crl.der"))
	assert.True(t, strings.HasPrefix(string(got), "-----BEGIN X509 CRL-----"))
	crls, err := ParseCRLs(got)
	require.NoError(t, err)
	assert.Len(t, crls, 1)
	assert.Nil(t, CRLPEM(nil))
	assert.NoError(t, CheckCRLBlocks(nil))
}

// seeds adds every testdata file to f.
func seeds(f *testing.F) {
	entries, err := os.ReadDir("testdata")
	require.NoError(f, err)
	for _, e := range entries {
		if !e.IsDir() {
			f.Add(readTestdata(f, e.Name()))
		}
	}
}

func FuzzParseCertificates(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err == nil && (len(certs) == 0 || len(certs) > MaxCertificates) {
			t.Fatalf("%d certificates without an error", len(certs))
		}
	})
}

func FuzzParsePrivateKey(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if key, err := ParsePrivateKey(data); err == nil && key == nil {
			t.Fatal("nil key without an error")
		}
	})
}

func FuzzParseCRLs(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		crls, err := ParseCRLs(data)
		if err == nil && (len(crls) == 0 || len(crls) > MaxCRLs) {
			t.Fatalf("%d CRLs without an error", len(crls))
		}
		if err == nil {
			if _, err := ParseCRLs(CRLPEM(data)); err != nil {
				t.Fatalf("CRLPEM of a valid CRL file does not parse: %v", err)
			}
		}
	})
}
