package keystore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvmpki/kvmpki/internal/pemx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/safefs"
	"github.com/kvmpki/kvmpki/provider"
)

func TestImport(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format Format
		kt     KeyAlgorithm
	}{
		{"PKCS12 ECDSA", FormatPKCS12, KeyAlgorithmECDSA},
		{"JKS RSA", FormatJKS, KeyAlgorithmRSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newCA(t)
			dir := t.TempDir()
			res, err := Setup(context.Background(), dir, hostSetupOptions(tc.format, tc.kt))
			require.NoError(t, err)
			certPEM, caPEM := issue(t, ca, res.CSR)
			got, err := Import(context.Background(), dir, certPEM, caPEM, nil)
			require.NoError(t, err)
			require.Len(t, got.Chain, 2)
			assert.True(t, got.Chain[1].Equal(ca.Certificate()))

			for name, mode := range map[string]fs.FileMode{
				KeyFile: 0o600, KeystoreFile: 0o600, CertFile: 0o644, CACertFile: 0o644, CSRFile: 0o600,
			} {
				fi, err := os.Stat(filepath.Join(dir, name))
				require.NoError(t, err, name)
				assert.Equal(t, mode, fi.Mode().Perm(), name)
			}
			assert.Equal(t, certPEM, readFile(t, filepath.Join(dir, CertFile)))
			assert.Equal(t, caPEM, readFile(t, filepath.Join(dir, CACertFile)))
			key, err := pemx.ParsePrivateKey(readFile(t, filepath.Join(dir, KeyFile)))
			require.NoError(t, err)
			assert.NoError(t, matchKey(got.Chain[0], key.Public()))

			pw, err := readPassphrase(context.Background(), filepath.Join(dir, PropertiesFile))
			require.NoError(t, err)
			ks, err := Load(context.Background(), filepath.Join(dir, KeystoreFile), pw)
			require.NoError(t, err)
			assert.Equal(t, tc.format, ks.Format(), "the keystore keeps its format")
			assert.Equal(t, []string{"cloud", "cloudca.1"}, ks.Aliases())
			_, chain, err := ks.PrivateKey(KeyAlias)
			require.NoError(t, err)
			require.Len(t, chain, 2)
			assert.True(t, chain[0].Equal(got.Chain[0]))

			creds, err := CheckSecured(context.Background(), dir, nil)
			require.NoError(t, err)
			assert.Equal(t, got.Chain[0].NotAfter, creds.NotAfter)
			assertNoTempFiles(t, dir)
		})
	}
}

// snapshot returns the content of every file in dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	files := map[string]string{}
	for _, e := range entries {
		files[e.Name()] = string(readFile(t, filepath.Join(dir, e.Name())))
	}
	return files
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotEqual(t, '.', rune(e.Name()[0]), "leftover %s", e.Name())
	}
}

// securedHost onboards a host and issues a second certificate for the same
// key, which a renewal would import. It returns the directory and the
// renewal's PEMs.
func securedHost(t *testing.T, ca interface {
	Issue(context.Context, *provider.IssueRequest) (*provider.IssueResult, error)
}, dir string) (certPEM []byte) {
	t.Helper()
	csr := readFile(t, filepath.Join(dir, CSRFile))
	res, err := ca.Issue(context.Background(), &provider.IssueRequest{
		CSR: csr, DNSNames: []string{"kvm1.example.org"}, Role: provider.RoleHost,
	})
	require.NoError(t, err)
	return pemCerts(res.Certificate)
}

func TestImportRefusesAndChangesNothing(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	onboard(t, ca, dir, FormatPKCS12, KeyAlgorithmECDSA)
	before := snapshot(t, dir)
	caPEM := readFile(t, filepath.Join(dir, CACertFile))
	renewal := securedHost(t, ca, dir)

	// A certificate for another key, from the same CA.
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "kvm1.example.org"}}, otherKey)
	require.NoError(t, err)
	otherCert, _ := issue(t, ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))
	foreignCA := pemCerts(newCA(t).Certificate())

	var chainErr *ChainError
	for _, tc := range []struct {
		name    string
		cert    []byte
		ca      []byte
		opts    *ImportOptions
		check   func(t *testing.T, err error)
		mutate  func(t *testing.T)
		restore func(t *testing.T)
	}{
		{name: "another key", cert: otherCert, ca: caPEM, check: func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrKeyMismatch) }},
		{name: "foreign CA bundle", cert: renewal, ca: foreignCA, check: func(t *testing.T, err error) {
			assert.ErrorAs(t, err, &chainErr)
			assert.ErrorIs(t, err, provider.ErrUnknownAuthority, "the sentinel every package shares")
		}},
		{name: "expired at import time", cert: renewal, ca: caPEM,
			opts: &ImportOptions{Time: fixedTime(time.Now().Add(20 * 365 * 24 * time.Hour))},
			check: func(t *testing.T, err error) {
				require.ErrorAs(t, err, &chainErr)
				var inv x509.CertificateInvalidError
				assert.ErrorAs(t, err, &inv)
				assert.Equal(t, x509.Expired, inv.Reason)
				assert.ErrorIs(t, err, provider.ErrExpired, "the sentinel every package shares")
			}},
		{name: "no certificate", cert: []byte("garbage"), ca: caPEM, check: func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrNoCertificateBlock) }},
		{name: "key pasted as certificate", cert: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), ca: caPEM,
			check: func(t *testing.T, err error) { assert.ErrorContains(t, err, `a "PRIVATE KEY" block`) }},
		{name: "empty CA bundle", cert: renewal, ca: nil, check: func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrNoCertificateBlock) }},
		{name: "no passphrase", cert: renewal, ca: caPEM,
			opts:  &ImportOptions{PropertiesFile: filepath.Join(t.TempDir(), "missing.properties")},
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrNoPassphrase) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Import(context.Background(), dir, tc.cert, tc.ca, tc.opts)
			require.Error(t, err)
			tc.check(t, err)
			assert.Equal(t, before, snapshot(t, dir), "a refused import must change nothing")
		})
	}
	_, err = Import(context.Background(), dir, renewal, caPEM, nil)
	require.NoError(t, err)
	assert.NotEqual(t, before[CertFile], string(readFile(t, filepath.Join(dir, CertFile))))
}

// faultFS is the real file system with one step made to fail: the n-th
// step (counting from 0) of a write, as safefs reports them; cleanup is
// not counted.
type faultFS struct {
	failAt, calls int
}

var errInjected = errors.New("injected fault")

func (f *faultFS) step(safefs.Step) error {
	f.calls++
	if f.calls-1 == f.failAt {
		return errInjected
	}
	return nil
}

// TestImportAtomic fails every file-system step of an import in turn
// (create, chmod, write, sync, close, link, rename) and checks that each
// failure leaves the previous working set of files exactly as it was,
// with no temporary file left behind.
func TestImportAtomic(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	onboard(t, ca, dir, FormatJKS, KeyAlgorithmECDSA)
	caPEM := readFile(t, filepath.Join(dir, CACertFile))
	renewal := securedHost(t, ca, dir)
	before := snapshot(t, dir)

	// Count the steps of a successful import on a copy.
	probe := t.TempDir()
	for name, content := range before {
		require.NoError(t, os.WriteFile(filepath.Join(probe, name), []byte(content), 0o600))
	}
	counter := &faultFS{failAt: -1}
	_, err := importCert(context.Background(), probe, renewal, caPEM, nil, counter)
	require.NoError(t, err)
	steps := counter.calls
	require.Greater(t, steps, 20, "4 files × (create, chmod, write, sync, close, link, rename) + dir sync")

	for i := range steps - 1 { // the last step, the directory sync, comes after every rename
		_, err := importCert(context.Background(), dir, renewal, caPEM, nil, &faultFS{failAt: i})
		require.ErrorIs(t, err, errInjected, "step %d", i)
		require.Equal(t, before, snapshot(t, dir), "step %d changed the files", i)
		_, err = CheckSecured(context.Background(), dir, nil)
		require.NoError(t, err, "step %d", i)
	}
	_, err = importCert(context.Background(), dir, renewal, caPEM, nil, &faultFS{failAt: -1})
	require.NoError(t, err)
	assert.Equal(t, string(renewal), string(readFile(t, filepath.Join(dir, CertFile))))
	assertNoTempFiles(t, dir)
}

func TestImportWithoutKeyEntry(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	res, err := Setup(context.Background(), dir, hostSetupOptions(FormatPKCS12, KeyAlgorithmECDSA))
	require.NoError(t, err)
	certPEM, caPEM := issue(t, ca, res.CSR)
	pw, err := readPassphrase(context.Background(), filepath.Join(dir, PropertiesFile))
	require.NoError(t, err)
	trustOnly := New(FormatPKCS12)
	require.NoError(t, trustOnly.SetTrustedCert("cloudca.1", ca.Certificate()))
	data, err := trustOnly.Marshal(FormatPKCS12, pw)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, KeystoreFile), data, 0o600))
	before := snapshot(t, dir)
	_, err = Import(context.Background(), dir, certPEM, caPEM, nil)
	assert.ErrorIs(t, err, ErrEntryNotFound)
	assert.ErrorContains(t, err, `"cloud"`)
	assert.Equal(t, before, snapshot(t, dir))
}
