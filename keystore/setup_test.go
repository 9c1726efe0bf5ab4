package keystore

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSetup(t *testing.T) {
	dir := t.TempDir()
	original := readFile(t, filepath.Join("testdata", PropertiesFile))
	props := filepath.Join(dir, PropertiesFile)
	require.NoError(t, os.WriteFile(props, original, 0o640))

	opts := hostSetupOptions(FormatUnknown, KeyAlgorithmECDSA)
	opts.DNSNames = []string{"kvm1.example.org", "kvm1"}
	res, err := Setup(context.Background(), dir, opts)
	require.NoError(t, err)
	assert.True(t, res.NewPassphrase)
	assert.Equal(t, FormatPKCS12, res.Format)

	// The properties file is the original plus one line.
	after := readFile(t, props)
	require.True(t, bytes.HasPrefix(after, original), "existing lines must stay untouched")
	added := string(after[len(original):])
	assert.Regexp(t, `^keystore\.passphrase=[A-Z2-7]{26}\n$`, added)
	pw, err := readPassphrase(context.Background(), props)
	require.NoError(t, err)

	for _, name := range []string{PropertiesFile, KeystoreFile, CSRFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), name)
	}

	req := res.Request
	require.NoError(t, req.CheckSignature())
	assert.Equal(t, "kvm1.example.org", req.Subject.CommonName)
	assert.Equal(t, []string{"kvm1.example.org", "kvm1"}, req.DNSNames)
	require.Len(t, req.IPAddresses, 1)
	assert.True(t, req.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)))
	assert.IsType(t, &ecdsa.PublicKey{}, req.PublicKey)

	ks, err := Load(context.Background(), filepath.Join(dir, KeystoreFile), pw)
	require.NoError(t, err)
	assert.Equal(t, FormatPKCS12, ks.Format())
	key, chain, err := ks.PrivateKey(KeyAlias)
	require.NoError(t, err)
	require.Len(t, chain, 1)
	assert.True(t, key.Public().(*ecdsa.PublicKey).Equal(req.PublicKey))

	// A second run reuses the passphrase and makes a new key.
	res2, err := Setup(context.Background(), dir, opts)
	require.NoError(t, err)
	assert.False(t, res2.NewPassphrase)
	assert.Equal(t, after, readFile(t, props))
	assert.False(t, res2.Request.PublicKey.(*ecdsa.PublicKey).Equal(req.PublicKey))
}

func TestSetupKeysAndFormats(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kt      KeyAlgorithm
		bits    int
		format  Format
		wantErr error
	}{
		{"RSA default size JKS", KeyAlgorithmRSA, 0, FormatJKS, nil},
		{"RSA 3072", KeyAlgorithmRSA, 3072, FormatPKCS12, nil},
		{"RSA 1024 refused", KeyAlgorithmRSA, 1024, FormatPKCS12, ErrUnsupportedKey},
		{"ECDSA JKS", KeyAlgorithmECDSA, 0, FormatJKS, nil},
		{"default is ECDSA P-256", KeyAlgorithmDefault, 0, FormatPKCS12, nil},
		{"ECDSA P-384", KeyAlgorithmECDSA, 384, FormatPKCS12, nil},
		{"ECDSA 521 refused", KeyAlgorithmECDSA, 521, FormatPKCS12, ErrUnsupportedKey},
		{"unknown algorithm refused", KeyAlgorithm(9), 0, FormatPKCS12, ErrUnsupportedKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := hostSetupOptions(tc.format, tc.kt)
			opts.KeySize = tc.bits
			res, err := Setup(context.Background(), dir, opts)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				_, statErr := os.Stat(filepath.Join(dir, KeystoreFile))
				assert.True(t, os.IsNotExist(statErr), "nothing is written on error")
				return
			}
			require.NoError(t, err)
			data := readFile(t, filepath.Join(dir, KeystoreFile))
			f, err := DetectFormat(data)
			require.NoError(t, err)
			assert.Equal(t, tc.format, f)
			if tc.kt == KeyAlgorithmRSA {
				want := tc.bits
				if want == 0 {
					want = defaultRSABits
				}
				assert.Equal(t, want, res.Request.PublicKey.(*rsa.PublicKey).N.BitLen())
			} else {
				want := tc.bits
				if want == 0 {
					want = 256
				}
				assert.Equal(t, want, res.Request.PublicKey.(*ecdsa.PublicKey).Curve.Params().BitSize)
			}
		})
	}
}

// TestParseKeyAlgorithm: keystore's parser is pkicore's (tested there)
// with the package prefix on its error.
func TestParseKeyAlgorithm(t *testing.T) {
	got, err := ParseKeyAlgorithm("EC")
	require.NoError(t, err)
	assert.Equal(t, KeyAlgorithmECDSA, got)
	_, err = ParseKeyAlgorithm("dsa")
	assert.EqualError(t, err, `keystore: unknown key algorithm "dsa" (want rsa or ecdsa)`)
}

// TestSetupReplacesStaleKeystore is CloudStack issue #6716: a keystore
// left over under another passphrase must not block a new setup.
func TestSetupReplacesStaleKeystore(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	stale, _ := testStore(t, ca, FormatJKS, 1)
	data, err := stale.Marshal(FormatJKS, []byte("old-passphrase"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, KeystoreFile), data, 0o600))
	_, err = Setup(context.Background(), dir, hostSetupOptions(FormatPKCS12, KeyAlgorithmECDSA))
	require.NoError(t, err)
	pw, err := readPassphrase(context.Background(), filepath.Join(dir, PropertiesFile))
	require.NoError(t, err)
	ks, err := Load(context.Background(), filepath.Join(dir, KeystoreFile), pw)
	require.NoError(t, err)
	assert.Equal(t, []string{"cloud"}, ks.Aliases())
}

func TestSetupKeepsTrustedEntries(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	onboard(t, ca, dir, FormatPKCS12, KeyAlgorithmECDSA)
	_, err := Setup(context.Background(), dir, hostSetupOptions(FormatPKCS12, KeyAlgorithmECDSA))
	require.NoError(t, err)
	pw, err := readPassphrase(context.Background(), filepath.Join(dir, PropertiesFile))
	require.NoError(t, err)
	ks, err := Load(context.Background(), filepath.Join(dir, KeystoreFile), pw)
	require.NoError(t, err)
	assert.Equal(t, []string{"cloud", "cloudca.1"}, ks.Aliases())
}

// TestSetupKeepsOtherKeyEntries checks that Setup replaces only "cloud":
// another key entry in the host's keystore is not Setup's to drop.
func TestSetupKeepsOtherKeyEntries(t *testing.T) {
	for _, format := range []Format{FormatJKS, FormatPKCS12} {
		t.Run(format.String(), func(t *testing.T) {
			dir := t.TempDir()
			ca := newCA(t)
			onboard(t, ca, dir, format, KeyAlgorithmECDSA)
			pw, err := readPassphrase(context.Background(), filepath.Join(dir, PropertiesFile))
			require.NoError(t, err)
			path := filepath.Join(dir, KeystoreFile)
			ks, err := Load(context.Background(), path, pw)
			require.NoError(t, err)
			other := *ks.entries[KeyAlias]
			other.key = bytes.Clone(other.key)
			ks.entries["other-service"] = &other
			data, err := ks.Marshal(format, pw)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, data, 0o600))

			_, err = Setup(context.Background(), dir, hostSetupOptions(format, KeyAlgorithmECDSA))
			require.NoError(t, err)
			after, err := Load(context.Background(), path, pw)
			require.NoError(t, err)
			assert.Equal(t, []string{"cloud", "cloudca.1", "other-service"}, after.Aliases())
			require.Contains(t, after.entries, "other-service")
			assert.Equal(t, other.key, after.entries["other-service"].key, "the other key must survive Setup")
			assert.NotEqual(t, other.key, after.entries[KeyAlias].key, "cloud gets a new key")
		})
	}
}

func TestSetupRefusesBadPassphrase(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, PropertiesFile), []byte("keystore.passphrase=abc\n"), 0o600))
	_, err := Setup(context.Background(), dir, hostSetupOptions(FormatPKCS12, KeyAlgorithmECDSA))
	assert.ErrorIs(t, err, ErrInvalidPassword)
	assert.NotContains(t, err.Error(), "=abc")
}

func TestSetupDefaults(t *testing.T) {
	dir := t.TempDir()
	res, err := Setup(context.Background(), dir, nil)
	require.NoError(t, err)
	host, err := os.Hostname()
	require.NoError(t, err)
	assert.Equal(t, host, res.Request.Subject.CommonName)
	for _, ip := range res.Request.IPAddresses {
		assert.True(t, usableAddress(ip), ip.String())
	}
}

func TestSetupCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	_, err := Setup(ctx, dir, hostSetupOptions(FormatPKCS12, KeyAlgorithmECDSA))
	assert.ErrorIs(t, err, context.Canceled)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestFilterAddresses(t *testing.T) {
	addr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		require.NoError(t, err)
		n.IP = ip
		return n
	}
	got := filterAddresses([]net.Addr{
		addr("127.0.0.1/8"), addr("::1/128"), addr("169.254.3.4/16"), addr("fe80::1/64"),
		addr("192.0.2.10/24"), addr("2001:db8::10/64"), addr("192.0.2.10/24"), addr("0.0.0.0/0"),
		&net.IPAddr{IP: net.ParseIP("198.51.100.7")},
	})
	var s []string
	for _, ip := range got {
		s = append(s, ip.String())
	}
	assert.Equal(t, []string{"192.0.2.10", "2001:db8::10", "198.51.100.7"}, s)
}

// TestSetupAtomic fails every file-system step of a first Setup in turn:
// the properties file, keystore and CSR are replaced together or not at
// all.
func TestSetupAtomic(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, PropertiesFile), []byte("host=192.0.2.1\n"), 0o600))
	before := snapshot(t, dir)
	counter := &faultFS{failAt: -1}
	probe := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(probe, PropertiesFile), []byte("host=192.0.2.1\n"), 0o600))
	_, err := setup(context.Background(), probe, hostSetupOptions(FormatPKCS12, KeyAlgorithmECDSA), counter)
	require.NoError(t, err)
	for i := range counter.calls - 1 {
		_, err := setup(context.Background(), dir, hostSetupOptions(FormatPKCS12, KeyAlgorithmECDSA), &faultFS{failAt: i})
		require.ErrorIs(t, err, errInjected, "step %d", i)
		require.Equal(t, before, snapshot(t, dir), "step %d changed the files", i)
	}
}
