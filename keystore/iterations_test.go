package keystore

import (
	"context"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
)

// writtenIterations returns the MAC's iteration count and those of every
// PBES2 encryption (the certificate safe, then each shrouded key) of a
// PKCS #12 file written by this package.
func writtenIterations(t testing.TB, data []byte) (mac int, pbes2 []int) {
	t.Helper()
	pfx, content, err := unmarshalPFX(data)
	require.NoError(t, err)
	var safes []contentInfo
	require.NoError(t, unmarshalDER(content, &safes, "safes"))
	iterations := func(algo pkix.AlgorithmIdentifier) int {
		require.True(t, algo.Algorithm.Equal(oidPBES2))
		var p pbes2Params
		require.NoError(t, unmarshalDER(algo.Parameters.FullBytes, &p, "PBES2"))
		var kp pbkdf2Params
		require.NoError(t, unmarshalDER(p.KDF.Parameters.FullBytes, &kp, "PBKDF2"))
		return kp.Iterations
	}
	for _, ci := range safes {
		body, err := unwrapExplicit(ci.Content, "safe")
		require.NoError(t, err)
		if ci.ContentType.Equal(oidEncryptedData) {
			var ed encryptedData
			require.NoError(t, unmarshalDER(body, &ed, "encrypted data"))
			pbes2 = append(pbes2, iterations(ed.EncryptedContentInfo.ContentEncryptionAlgorithm))
			continue
		}
		var plain []byte
		require.NoError(t, unmarshalDER(body, &plain, "data"))
		var bags []safeBag
		require.NoError(t, unmarshalDER(plain, &bags, "bags"))
		for _, b := range bags {
			if b.ID.Equal(oidShroudedKeyBag) {
				v, err := unwrapExplicit(b.Value, "bag")
				require.NoError(t, err)
				var epki encryptedPrivateKeyInfo
				require.NoError(t, unmarshalDER(v, &epki, "epki"))
				pbes2 = append(pbes2, iterations(epki.Algorithm))
			}
		}
	}
	return pfx.MacData.Iterations, pbes2
}

// TestWrittenIterations: PKCS #12 is written with keytool's 10,000
// iterations wherever the password may be a person's, and with 2,048
// only by a Setup that generated its passphrase (130 random bits) just
// now. Every file still lists in JDK 17 keytool.
func TestWrittenIterations(t *testing.T) {
	ca := newCA(t)
	store, _ := testStore(t, ca, FormatPKCS12, 1)
	trustOnly := New(FormatPKCS12)
	require.NoError(t, trustOnly.SetTrustedCert("cloudca.1", ca.Certificate()))

	fresh := t.TempDir()
	_, err := Setup(context.Background(), fresh, hostSetupOptions(FormatPKCS12, KeyAlgorithmECDSA))
	require.NoError(t, err)
	reused := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(reused, PropertiesFile), []byte("keystore.passphrase=my-own-password\n"), 0o600))
	_, err = Setup(context.Background(), reused, hostSetupOptions(FormatPKCS12, KeyAlgorithmECDSA))
	require.NoError(t, err)
	imported := t.TempDir()
	onboard(t, ca, imported, FormatPKCS12, KeyAlgorithmECDSA)

	file := func(dir string) []byte { return readFile(t, filepath.Join(dir, KeystoreFile)) }
	password := func(dir string) []byte {
		pw, err := readPassphrase(context.Background(), filepath.Join(dir, PropertiesFile))
		require.NoError(t, err)
		return pw
	}
	marshal := func(ks *KeyStore) []byte {
		data, err := ks.Marshal(FormatPKCS12, testPassword)
		require.NoError(t, err)
		return data
	}
	tests := []struct {
		name     string
		data     []byte
		password []byte
		want     int
		safes    int
	}{
		{name: "Marshal", data: marshal(store), password: testPassword, want: 10_000, safes: 2},
		{name: "Marshal trust store", data: marshal(trustOnly), password: testPassword, want: 10_000, safes: 1},
		{name: "Setup with a generated passphrase", data: file(fresh), password: password(fresh), want: 2048, safes: 2},
		{name: "Setup with the properties' passphrase", data: file(reused), password: password(reused), want: 10_000, safes: 2},
		{name: "Import", data: file(imported), password: password(imported), want: 10_000, safes: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mac, pbes2 := writtenIterations(t, tc.data)
			assert.Equal(t, tc.want, mac, "MAC iterations")
			require.Len(t, pbes2, tc.safes)
			for _, n := range pbes2 {
				assert.Equal(t, tc.want, n, "PBKDF2 iterations")
			}
			_, err := Parse(tc.data, tc.password)
			require.NoError(t, err)
			out, err := peers.KeytoolList(t, tc.data, tc.password)
			require.NoError(t, err)
			assert.Contains(t, out, "Keystore type: PKCS12")
		})
	}
}
