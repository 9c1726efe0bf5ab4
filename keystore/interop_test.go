package keystore

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
)

// keytoolEntries parses `keytool -list -v` output into alias → entry type
// and alias → chain length.
func keytoolEntries(out string) (types map[string]string, chains map[string]string) {
	types, chains = map[string]string{}, map[string]string{}
	var alias string
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "Alias name: "); ok {
			alias = v
		} else if v, ok := strings.CutPrefix(line, "Entry type: "); ok {
			types[alias] = v
		} else if v, ok := strings.CutPrefix(line, "Certificate chain length: "); ok {
			chains[alias] = v
		}
	}
	return types, chains
}

// TestKeytoolReadsOurStores proves with JDK keytool that every keystore
// this package writes lists with the right type, aliases, entry types and
// chain length.
func TestKeytoolReadsOurStores(t *testing.T) {
	t.Parallel()
	peers.Require(t, "keytool")
	ca := newCA(t)
	full, _ := testStore(t, ca, FormatJKS, 2)
	trustOnly := New(FormatPKCS12)
	require.NoError(t, trustOnly.SetTrustedCert("cloudca.1", ca.Certificate()))
	for _, tc := range []struct {
		name      string
		ks        *KeyStore
		format    Format
		wantType  string
		wantTypes map[string]string
	}{
		{"JKS", full, FormatJKS, "JKS", map[string]string{"cloud": "PrivateKeyEntry", "cloudca.1": "trustedCertEntry", "cloudca.2": "trustedCertEntry"}},
		{"PKCS12", full, FormatPKCS12, "PKCS12", map[string]string{"cloud": "PrivateKeyEntry", "cloudca.1": "trustedCertEntry", "cloudca.2": "trustedCertEntry"}},
		// Trust-only stores come from the same writer, with one
		// (encrypted) safe and no key safe: JDK 17 reads them.
		{"PKCS12 trust store", trustOnly, FormatPKCS12, "PKCS12", map[string]string{"cloudca.1": "trustedCertEntry"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.ks.Marshal(tc.format, testPassword)
			require.NoError(t, err)
			out, err := peers.KeytoolList(t, data, testPassword)
			require.NoError(t, err)
			assert.Contains(t, out, "Keystore type: "+tc.wantType)
			types, chains := keytoolEntries(out)
			assert.Equal(t, tc.wantTypes, types, out)
			if _, ok := tc.wantTypes["cloud"]; ok {
				assert.Equal(t, "2", chains["cloud"], out)
			}

		})
	}
	// keytool checks the integrity with the password.
	data, err := full.Marshal(FormatPKCS12, testPassword)
	require.NoError(t, err)
	_, err = peers.KeytoolList(t, data, []byte("not-the-password"))
	assert.ErrorContains(t, err, "password was incorrect")
}

// TestReadKeytoolStores reads keystores made by keytool itself: the
// default store type (PKCS12 since JDK 9, even in a file named .jks) and
// -storetype JKS, with EC and RSA keys and -importcert trusted entries.
func TestReadKeytoolStores(t *testing.T) {
	t.Parallel()
	peers.Require(t, "keytool")
	ca1 := newCA(t)
	trusted := [][]byte{pemCerts(ca1.Certificate())}
	for _, tc := range []struct {
		name      string
		storeType string
		keyAlg    string
		want      Format
	}{
		{"default type EC", "", "EC", FormatPKCS12},
		{"JKS RSA", "JKS", "RSA", FormatJKS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := peers.KeytoolGenKeyPair(t, testPassword, peers.KeytoolStoreOptions{
				StoreType: tc.storeType, Alias: "Cloud", KeyAlg: tc.keyAlg,
				Trusted: trusted, TrustedAliases: []string{"CloudCA.1"},
			})
			require.NoError(t, err)
			ks, err := Parse(data, testPassword)
			require.NoError(t, err)
			assert.Equal(t, tc.want, ks.Format())
			assert.Equal(t, []string{"cloud", "cloudca.1"}, ks.Aliases())
			key, chain, err := ks.PrivateKey("cloud")
			require.NoError(t, err)
			require.Len(t, chain, 1)
			assert.Equal(t, "CN=keytool-made", chain[0].Subject.String())
			assert.NoError(t, matchKey(chain[0], key.Public()))
			c, err := ks.TrustedCert("cloudca.1")
			require.NoError(t, err)
			assert.True(t, c.Equal(ca1.Certificate()))

			_, err = Parse(data, []byte("not-the-password"))
			assert.ErrorIs(t, err, ErrIncorrectPassword)
		})
	}
}

// TestKeytoolConvertsOurStores converts our stores with keytool
// -importkeystore both ways and reads the result back.
func TestKeytoolConvertsOurStores(t *testing.T) {
	t.Parallel()
	peers.Require(t, "keytool")
	ca := newCA(t)
	ks, _ := testStore(t, ca, FormatJKS, 2)
	for _, tc := range []struct {
		name     string
		from     Format
		destType string
		want     Format
	}{
		{"JKS to PKCS12", FormatJKS, "PKCS12", FormatPKCS12},
		{"PKCS12 to JKS", FormatPKCS12, "JKS", FormatJKS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := ks.Marshal(tc.from, testPassword)
			require.NoError(t, err)
			converted, err := peers.KeytoolConvert(t, data, testPassword, tc.destType)
			require.NoError(t, err)
			back, err := Parse(converted, testPassword)
			require.NoError(t, err)
			assert.Equal(t, tc.want, back.Format())
			assertSameStore(t, ks, back)
		})
	}
}

// TestOpenSSLVerifiesCSR checks the CSR Setup writes with openssl req
// -verify, for both key types.
func TestOpenSSLVerifiesCSR(t *testing.T) {
	peers.Require(t, "openssl")
	for _, kt := range []KeyAlgorithm{KeyAlgorithmECDSA, KeyAlgorithmRSA} {
		t.Run(map[KeyAlgorithm]string{KeyAlgorithmECDSA: "ECDSA", KeyAlgorithmRSA: "RSA"}[kt], func(t *testing.T) {
			dir := t.TempDir()
			opts := hostSetupOptions(FormatPKCS12, kt)
			opts.DNSNames = []string{"kvm1.example.org", "kvm1"}
			opts.IPAddresses = []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("2001:db8::10")}
			res, err := Setup(context.Background(), dir, opts)
			require.NoError(t, err)
			out, err := peers.OpenSSLReqVerify(t, readFile(t, filepath.Join(dir, CSRFile)))
			require.NoError(t, err)
			assert.Contains(t, out, "CN = kvm1.example.org")
			assert.Contains(t, out, "DNS:kvm1.example.org, DNS:kvm1, IP Address:192.0.2.10, IP Address:2001:DB8:0:0:0:0:0:10")
			assert.Equal(t, res.CSR, readFile(t, filepath.Join(dir, CSRFile)))
		})
	}
}

// TestJavaMutualTLSWithOurKeystore onboards a host (Setup, rootca issues,
// Import) and has a Java TLS client load cloud.jks as both key store and
// trust store, as the CloudStack agent does, and complete mutual TLS
// with a Go server whose certificate comes from the same CA.
func TestJavaMutualTLSWithOurKeystore(t *testing.T) {
	t.Parallel()
	peers.Require(t, "java")
	ca := newCA(t)
	server, err := ca.Issue(context.Background(), &provider.IssueRequest{
		CommonName: "localhost", DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Role: provider.RoleServer,
	})
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(server.PrivateKey)
	require.NoError(t, err)
	bundle, err := provider.CABundle(context.Background(), ca)
	require.NoError(t, err)
	serverPKI := peers.PKI{
		CACert: bundle,
		Cert:   pemCerts(server.Certificate),
		Key:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	for _, tc := range []struct {
		name   string
		format Format
		kt     KeyAlgorithm
		want   string
	}{
		{"PKCS12 ECDSA", FormatPKCS12, KeyAlgorithmECDSA, "keystore=PKCS12"},
		{"JKS RSA", FormatJKS, KeyAlgorithmRSA, "keystore=JKS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pw := onboard(t, ca, dir, tc.format, tc.kt)
			store := readFile(t, filepath.Join(dir, KeystoreFile))
			out, err := peers.JavaKeystoreClient(t, store, store, pw, serverPKI, "127.0.0.1")
			require.NoError(t, err)
			assert.Contains(t, out, tc.want)
			assert.Contains(t, out, "cloud")
			assert.Contains(t, out, "cloudca.1")
		})
	}

	// A trust store holding another CA makes Java refuse the server: the
	// handshake above succeeded because of cloudca.1.
	dir := t.TempDir()
	pw := onboard(t, ca, dir, FormatPKCS12, KeyAlgorithmECDSA)
	store := readFile(t, filepath.Join(dir, KeystoreFile))
	other := New(FormatPKCS12)
	require.NoError(t, other.SetTrustedCert("cloudca.1", newCA(t).Certificate()))
	foreign, err := other.Marshal(FormatPKCS12, pw)
	require.NoError(t, err)
	_, err = peers.JavaKeystoreClient(t, store, foreign, pw, serverPKI, "127.0.0.1")
	assert.ErrorContains(t, err, "PKIX path")
}

// TestGoPKCS12TrustStoreKeytool is the check of go-pkcs12's own trust
// store encoder with real keytool: Modern (PBES2 AES-256 for the
// certificate bag) and LegacyDES both list; the trusted entries keep
// their aliases.
func TestGoPKCS12TrustStoreKeytool(t *testing.T) {
	t.Parallel()
	peers.Require(t, "keytool")
	ca := newCA(t)
	for _, tc := range []struct {
		name string
		enc  *pkcs12.Encoder
	}{
		{"Modern", pkcs12.Modern},
		{"LegacyDES", pkcs12.LegacyDES},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.enc.EncodeTrustStoreEntries([]pkcs12.TrustStoreEntry{{Cert: ca.Certificate(), FriendlyName: "cloudca.1"}}, string(testPassword))
			require.NoError(t, err)
			out, err := peers.KeytoolList(t, data, testPassword)
			require.NoError(t, err)
			types, _ := keytoolEntries(out)
			assert.Equal(t, map[string]string{"cloudca.1": "trustedCertEntry"}, types)
		})
	}
}
