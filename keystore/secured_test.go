package keystore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckSecured(t *testing.T) {
	ca := newCA(t)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	otherKeyDER, err := x509.MarshalPKCS8PrivateKey(otherKey)
	require.NoError(t, err)

	var chainErr *ChainError
	for _, tc := range []struct {
		name     string
		break_   func(t *testing.T, dir string)
		opts     *CheckSecuredOptions
		wantFile string
		check    func(t *testing.T, err error)
	}{
		{name: "secured"},
		{name: "certificate missing", break_: remove(CertFile), wantFile: CertFile,
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, fs.ErrNotExist) }},
		{name: "key missing", break_: remove(KeyFile), wantFile: KeyFile,
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, fs.ErrNotExist) }},
		{name: "CA bundle missing", break_: remove(CACertFile), wantFile: CACertFile,
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, fs.ErrNotExist) }},
		{name: "keystore missing", break_: remove(KeystoreFile), wantFile: KeystoreFile,
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, fs.ErrNotExist) }},
		{name: "key does not match", wantFile: KeyFile,
			break_: write(KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherKeyDER})),
			check:  func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrKeyMismatch) }},
		{name: "another CA", wantFile: CertFile,
			break_: write(CACertFile, pemCerts(newCA(t).Certificate())),
			check:  func(t *testing.T, err error) { assert.ErrorAs(t, err, &chainErr) }},
		{name: "expired", wantFile: CertFile,
			opts:  &CheckSecuredOptions{Time: fixedTime(time.Now().Add(20 * 365 * 24 * time.Hour))},
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrExpired) }},
		// CA bundles carry the previous CA across a rollover; an expired
		// one that issued nothing here does not unsecure the host (Import
		// accepts such a bundle).
		{name: "secured with an expired old CA in the bundle",
			break_: func(t *testing.T, dir string) {
				bundle := readFile(t, filepath.Join(dir, CACertFile))
				write(CACertFile, append(bundle, pemCerts(expiredCA(t))...))(t, dir)
			}},
		{name: "passphrase changed", wantFile: PropertiesFile,
			break_: write(PropertiesFile, []byte("keystore.passphrase=\n")),
			check:  func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrNoPassphrase) }},
		{name: "wrong passphrase", wantFile: KeystoreFile,
			break_: write(PropertiesFile, []byte("keystore.passphrase=somethingelse\n")),
			check:  func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrIncorrectPassword) }},
		{name: "keystore key differs", wantFile: KeystoreFile,
			break_: func(t *testing.T, dir string) {
				password, err := readPassphrase(context.Background(), filepath.Join(dir, PropertiesFile))
				require.NoError(t, err)
				ks, err := Load(context.Background(), filepath.Join(dir, KeystoreFile), password)
				require.NoError(t, err)
				ks.entries[KeyAlias].key = otherKeyDER // same certificate, another key
				data, err := ks.Marshal(ks.Format(), password)
				require.NoError(t, err)
				write(KeystoreFile, data)(t, dir)
			},
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrKeyMismatch) }},
		{name: "keystore from a new setup", wantFile: KeystoreFile,
			break_: func(t *testing.T, dir string) {
				_, err := Setup(context.Background(), dir, hostSetupOptions(FormatPKCS12, KeyAlgorithmECDSA))
				require.NoError(t, err)
			},
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrKeyMismatch) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			onboard(t, ca, dir, FormatPKCS12, KeyAlgorithmECDSA)
			if tc.break_ != nil {
				tc.break_(t, dir)
			}
			creds, err := CheckSecured(context.Background(), dir, tc.opts)
			if tc.check == nil {
				require.NoError(t, err)
				require.Len(t, creds.Chain, 2)
				assert.False(t, creds.NotAfter.IsZero())
				return
			}
			var nse *NotSecuredError
			require.ErrorAs(t, err, &nse)
			assert.Equal(t, tc.wantFile, nse.File)
			tc.check(t, err)
		})
	}
}

func TestCheckSecuredAfterSetupOnly(t *testing.T) {
	dir := t.TempDir()
	_, err := Setup(context.Background(), dir, hostSetupOptions(FormatPKCS12, KeyAlgorithmECDSA))
	require.NoError(t, err)
	_, err = CheckSecured(context.Background(), dir, nil)
	var nse *NotSecuredError
	require.ErrorAs(t, err, &nse)
	assert.Equal(t, CertFile, nse.File)
	assert.ErrorContains(t, err, "keystore: host not secured: cloud.crt")
}

func remove(name string) func(*testing.T, string) {
	return func(t *testing.T, dir string) { require.NoError(t, os.Remove(filepath.Join(dir, name))) }
}

func write(name string, data []byte) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
}

// expiredCA returns a self-signed CA certificate that expired a year ago.
func expiredCA(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "old kvmpki root CA"},
		NotBefore:             time.Now().Add(-3 * 365 * 24 * time.Hour),
		NotAfter:              time.Now().Add(-365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

// TestCanceledContext: every call that does I/O takes a context first and
// stops before any I/O when it is done.
func TestCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	tests := []struct {
		name string
		call func() error
	}{
		{name: "Load", call: func() error { _, err := Load(ctx, filepath.Join(dir, KeystoreFile), testPassword); return err }},
		{name: "LoadProperties", call: func() error { _, err := LoadProperties(ctx, filepath.Join(dir, PropertiesFile)); return err }},
		{name: "CheckSecured", call: func() error { _, err := CheckSecured(ctx, dir, nil); return err }},
		{name: "HostAddresses", call: func() error { _, err := HostAddresses(ctx); return err }},
		{name: "Import", call: func() error { _, err := Import(ctx, dir, nil, nil, nil); return err }},
		{name: "Setup", call: func() error {
			_, err := Setup(ctx, dir, hostSetupOptions(FormatPKCS12, KeyAlgorithmDefault))
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, tc.call(), context.Canceled)
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing written")
}
