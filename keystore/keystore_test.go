package keystore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvmpki/kvmpki/provider"
	jks "github.com/pavlo-v-chernykh/keystore-go/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// assertSameStore checks that got holds the entries of want: aliases,
// types, keys and chains.
func assertSameStore(t *testing.T, want, got *KeyStore) {
	t.Helper()
	require.Equal(t, want.Aliases(), got.Aliases())
	for _, a := range want.Aliases() {
		wt, _ := want.EntryType(a)
		gt, ok := got.EntryType(a)
		require.True(t, ok, a)
		require.Equal(t, wt, gt, a)
		if wt == TrustedCertEntry {
			wc, err := want.TrustedCert(a)
			require.NoError(t, err)
			gc, err := got.TrustedCert(a)
			require.NoError(t, err)
			assert.True(t, wc.Equal(gc), a)
			continue
		}
		wk, wchain, err := want.PrivateKey(a)
		require.NoError(t, err)
		gk, gchain, err := got.PrivateKey(a)
		require.NoError(t, err)
		assert.True(t, wk.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(gk.Public()), a)
		require.Len(t, gchain, len(wchain), a)
		for i := range wchain {
			assert.True(t, wchain[i].Equal(gchain[i]), "%s chain[%d]", a, i)
		}
	}
}

func TestRoundTripAndConversion(t *testing.T) {
	ca := newCA(t)
	for _, tc := range []struct {
		name     string
		from, to Format
	}{
		{"JKS", FormatJKS, FormatJKS},
		{"PKCS12", FormatPKCS12, FormatPKCS12},
		{"JKS to PKCS12", FormatJKS, FormatPKCS12},
		{"PKCS12 to JKS", FormatPKCS12, FormatJKS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks, _ := testStore(t, ca, tc.from, 3)
			data, err := ks.Marshal(FormatUnknown, testPassword)
			require.NoError(t, err)
			f, err := DetectFormat(data)
			require.NoError(t, err)
			assert.Equal(t, tc.from, f)

			parsed, err := Parse(data, testPassword)
			require.NoError(t, err)
			assert.Equal(t, tc.from, parsed.Format())
			converted, err := parsed.Marshal(tc.to, testPassword)
			require.NoError(t, err)
			back, err := Parse(converted, testPassword)
			require.NoError(t, err)
			assert.Equal(t, tc.to, back.Format())
			assertSameStore(t, ks, back)
			assert.Equal(t, []string{"cloud", "cloudca.1", "cloudca.2", "cloudca.3"}, back.Aliases())
		})
	}
}

func TestTrustStoreOnly(t *testing.T) {
	ca := newCA(t)
	for _, f := range []Format{FormatJKS, FormatPKCS12} {
		t.Run(f.String(), func(t *testing.T) {
			ks := New(f)
			require.NoError(t, ks.SetTrustedCert("cloudca.1", ca.Certificate()))
			data, err := ks.Marshal(FormatUnknown, testPassword)
			require.NoError(t, err)
			back, err := Parse(data, testPassword)
			require.NoError(t, err)
			assertSameStore(t, ks, back)
			if f == FormatPKCS12 {
				// One encrypted safe of certificate bags with Java's
				// trust attribute: go-pkcs12's trust store reader
				// agrees.
				certs, err := pkcs12.DecodeTrustStore(data, string(testPassword))
				require.NoError(t, err)
				require.Len(t, certs, 1)
				assert.True(t, certs[0].Equal(ca.Certificate()))
			}
		})
	}
}

func TestPKCS12ReadByGoPKCS12(t *testing.T) {
	ca := newCA(t)
	ks, key := testStore(t, ca, FormatPKCS12, 0)
	data, err := ks.Marshal(FormatPKCS12, testPassword)
	require.NoError(t, err)
	gotKey, leaf, cas, err := pkcs12.DecodeChain(data, string(testPassword))
	require.NoError(t, err)
	assert.True(t, key.(*ecdsa.PrivateKey).Equal(gotKey))
	_, chain, err := ks.PrivateKey(KeyAlias)
	require.NoError(t, err)
	assert.True(t, leaf.Equal(chain[0]))
	require.Len(t, cas, 1)
	assert.True(t, cas[0].Equal(ca.Certificate()))
}

func TestParseGoPKCS12Encoders(t *testing.T) {
	ca := newCA(t)
	ks, key := testStore(t, ca, FormatPKCS12, 0)
	_, chain, err := ks.PrivateKey(KeyAlias)
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		enc     *pkcs12.Encoder
		wantErr error
	}{
		{"Modern", pkcs12.Modern, nil},
		{"LegacyDES", pkcs12.LegacyDES, nil},
		{"LegacyRC2", pkcs12.LegacyRC2, errors.ErrUnsupported},
		{"Modern2026 PBMAC1", pkcs12.Modern2026, errors.ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.enc.Encode(key, chain[0], chain[1:], string(testPassword))
			require.NoError(t, err)
			got, err := Parse(data, testPassword)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			// go-pkcs12 writes no friendlyName: Java calls the entry "1".
			assert.Equal(t, []string{"1"}, got.Aliases())
			gk, gchain, err := got.PrivateKey("1")
			require.NoError(t, err)
			assert.True(t, key.(*ecdsa.PrivateKey).Equal(gk))
			require.Len(t, gchain, 2)
			assert.True(t, gchain[1].Equal(ca.Certificate()))
		})
	}
}

func TestParseErrors(t *testing.T) {
	ca := newCA(t)
	ks, _ := testStore(t, ca, FormatJKS, 1)
	jksData, err := ks.Marshal(FormatJKS, testPassword)
	require.NoError(t, err)
	p12Data, err := ks.Marshal(FormatPKCS12, testPassword)
	require.NoError(t, err)

	for _, tc := range []struct {
		name     string
		data     []byte
		password []byte
		want     error
	}{
		{"JKS wrong password", jksData, []byte("wrong-password"), ErrIncorrectPassword},
		{"PKCS12 wrong password", p12Data, []byte("wrong-password"), ErrIncorrectPassword},
		{"JKS truncated", jksData[:len(jksData)/2], testPassword, ErrTruncated},
		{"JKS without digest", jksData[:len(jksData)-20], testPassword, ErrTruncated},
		{"PKCS12 truncated", p12Data[:len(p12Data)/2], testPassword, ErrTruncated},
		{"empty", nil, testPassword, ErrTruncated},
		{"unknown format", []byte("-----BEGIN CERTIFICATE-----\n"), testPassword, ErrUnknownFormat},
		{"JCEKS", []byte{0xce, 0xce, 0xce, 0xce, 0, 0, 0, 2, 0, 0, 0, 0}, testPassword, errors.ErrUnsupported},
		{"JKS trailing garbage", append(bytes.Clone(jksData), 0), testPassword, ErrMalformed},
		{"JKS huge entry count", append([]byte{0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff}, make([]byte, 20)...), testPassword, ErrTooLarge},
		{"JKS huge length", []byte{0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0}, testPassword, ErrTruncated},
		{"JKS non-ASCII password", jksData, []byte("pässwörd"), ErrInvalidPassword},
		{"too large", make([]byte, MaxFileSize+1), testPassword, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.data, tc.password)
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			assert.NotContains(t, err.Error(), string(testPassword))
		})
	}
}

// TestEveryPrefixFails checks that no proper prefix of a keystore parses.
func TestEveryPrefixFails(t *testing.T) {
	ca := newCA(t)
	ks, _ := testStore(t, ca, FormatJKS, 1)
	for _, f := range []Format{FormatJKS, FormatPKCS12} {
		data, err := ks.Marshal(f, testPassword)
		require.NoError(t, err)
		step := max(1, len(data)/200)
		for n := 0; n < len(data); n += step {
			_, err := Parse(data[:n], testPassword)
			require.Error(t, err, "%v prefix of %d bytes", f, n)
			require.True(t, isPackageError(err), "%v prefix %d: %v", f, n, err)
		}
	}
}

func TestEntryErrors(t *testing.T) {
	ca := newCA(t)
	ks, key := testStore(t, ca, FormatPKCS12, 1)
	_, _, err := ks.PrivateKey("missing")
	assert.ErrorIs(t, err, ErrEntryNotFound)
	assert.ErrorIs(t, err, provider.ErrNotFound, "the sentinel every package shares")
	assert.EqualError(t, err, `keystore: entry "missing": not found`)
	_, _, err = ks.PrivateKey("cloudca.1")
	assert.ErrorIs(t, err, ErrWrongEntryType)
	_, err = ks.TrustedCert(KeyAlias)
	assert.ErrorIs(t, err, ErrWrongEntryType)
	_, err = ks.TrustedCert("missing")
	assert.ErrorIs(t, err, ErrEntryNotFound)

	// Aliases are case-insensitive and stored lower-case.
	_, _, err = ks.PrivateKey("CLOUD")
	assert.NoError(t, err)

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	_, chain, err := ks.PrivateKey(KeyAlias)
	require.NoError(t, err)
	assert.ErrorIs(t, ks.SetPrivateKey("x", other, chain), ErrKeyMismatch)
	assert.Error(t, ks.SetPrivateKey("x", key, nil))
	assert.Error(t, ks.SetPrivateKey("bad\x00alias", key, chain))

	ks.Delete("cloudca.1")
	assert.Equal(t, []string{"cloud"}, ks.Aliases())
}

func TestMarshalPasswordRules(t *testing.T) {
	ca := newCA(t)
	ks, _ := testStore(t, ca, FormatJKS, 0)
	for _, tc := range []struct {
		name string
		pw   []byte
		f    Format
	}{
		{"short JKS", []byte("12345"), FormatJKS},
		{"short PKCS12", []byte("12345"), FormatPKCS12},
		{"non-ASCII JKS", []byte("pässwörd"), FormatJKS},
		{"non-ASCII PKCS12", []byte("pässwörd"), FormatPKCS12},
		{"control character", []byte("passw\nord"), FormatJKS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ks.Marshal(tc.f, tc.pw)
			assert.ErrorIs(t, err, ErrInvalidPassword)
			assert.NotContains(t, err.Error(), string(tc.pw))
		})
	}
}

// TestJKSRefusesPKCS1 checks that a JKS key entry holding PKCS #1 bytes,
// which keytool lists but cannot use, is refused.
func TestJKSRefusesPKCS1(t *testing.T) {
	ca := newCA(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	src := jks.New()
	require.NoError(t, src.SetPrivateKeyEntry("cloud", jks.PrivateKeyEntry{
		CreationTime:     time.Now(),
		PrivateKey:       x509.MarshalPKCS1PrivateKey(rsaKey),
		CertificateChain: []jks.Certificate{{Type: "X.509", Content: ca.Certificate().Raw}},
	}, testPassword))
	var buf bytes.Buffer
	require.NoError(t, src.Store(&buf, testPassword))
	_, err = Parse(buf.Bytes(), testPassword)
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorContains(t, err, "PKCS #8")
}

func TestDetectFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want Format
		err  error
	}{
		{"JKS", []byte{0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2}, FormatJKS, nil},
		{"DER", []byte{0x30, 0x82, 0x01, 0x00}, FormatPKCS12, nil},
		{"JCEKS", []byte{0xce, 0xce, 0xce, 0xce}, FormatUnknown, errors.ErrUnsupported},
		{"PEM", []byte("-----BEGIN"), FormatUnknown, ErrUnknownFormat},
		{"short JKS", []byte{0xfe, 0xed}, FormatUnknown, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := DetectFormat(tc.data)
			assert.Equal(t, tc.want, f)
			if tc.err == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tc.err)
			}
		})
	}
}

func TestGeneratePassword(t *testing.T) {
	a, err := GeneratePassword(nil)
	require.NoError(t, err)
	b, err := GeneratePassword(nil)
	require.NoError(t, err)
	assert.Len(t, a, 26)
	assert.NotEqual(t, a, b)
	assert.NoError(t, checkPassword(a, FormatJKS))
	_, err = GeneratePassword(bytes.NewReader(nil))
	assert.Error(t, err)
}

// isPackageError reports whether err wraps one of the package's
// sentinels, so that fuzzing can tell its errors from stray ones.
func isPackageError(err error) bool {
	for _, s := range []error{ErrUnknownFormat, errors.ErrUnsupported, ErrTruncated, ErrMalformed,
		ErrIncorrectPassword, ErrTooLarge, ErrInvalidPassword, ErrMalformedProperties,
		ErrUnsupportedKey, ErrEntryNotFound, ErrWrongEntryType, ErrWorkLimit} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// TestReadKeytoolTestdata reads the keystores keytool made for
// testdata/README.md, without needing keytool.
func TestReadKeytoolTestdata(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Format
		alg  x509.PublicKeyAlgorithm
	}{
		{"keytool-default.jks", FormatPKCS12, x509.ECDSA},
		{"keytool-jks.jks", FormatJKS, x509.RSA},
	} {
		t.Run(tc.file, func(t *testing.T) {
			ks, err := Load(context.Background(), filepath.Join("testdata", tc.file), testPassword)
			require.NoError(t, err)
			assert.Equal(t, tc.want, ks.Format())
			assert.Equal(t, []string{"cloud", "cloudca.1"}, ks.Aliases())
			key, chain, err := ks.PrivateKey("cloud")
			require.NoError(t, err)
			assert.Equal(t, tc.alg, chain[0].PublicKeyAlgorithm)
			assert.NoError(t, matchKey(chain[0], key.Public()))
			ca, err := ks.TrustedCert("cloudca.1")
			require.NoError(t, err)
			assert.Equal(t, "CN=testdata CA,O=kvmpki", ca.Subject.String())
		})
	}
}
