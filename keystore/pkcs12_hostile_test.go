package keystore

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// constReader returns the same byte forever: every salt and IV drawn from
// it is the same.
type constReader byte

func (r constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// manySafesPFX builds a PKCS #12 file whose authenticated safe holds n
// encrypted (empty) safes at iterations PBKDF2 iterations each, with one
// salt for all when shared, else a random salt each: the first attack of
// issue 11 item 5. Its MAC takes one iteration.
func manySafesPFX(t testing.TB, n, iterations int, shared bool) []byte {
	t.Helper()
	empty, err := asn1.Marshal([]safeBag{})
	require.NoError(t, err)
	var rnd = rand.Reader
	if shared {
		rnd = constReader(7)
	}
	safes := make([]contentInfo, 0, n)
	var enc []byte
	for range n {
		if enc == nil || !shared {
			algo, ct, err := pbes2Encrypt(rnd, testPassword, empty, iterations)
			require.NoError(t, err)
			enc, err = asn1.Marshal(encryptedData{EncryptedContentInfo: encryptedContentInfo{
				ContentType: oidData, ContentEncryptionAlgorithm: algo, EncryptedContent: ct}})
			require.NoError(t, err)
		}
		safes = append(safes, contentInfo{ContentType: oidEncryptedData, Content: explicit(enc)})
	}
	content, err := asn1.Marshal(safes)
	require.NoError(t, err)
	data, err := marshalPFX(content, testPassword, rand.Reader, 1)
	require.NoError(t, err)
	return data
}

// TestHostileSafesKDFBudget: safes sharing their parameters derive one
// key, and safes that do not stop at the file's budget with ErrWorkLimit.
// The assertions count derivations, not time.
func TestHostileSafesKDFBudget(t *testing.T) {
	// A tenth of the budget, so that the race detector's slower hashing
	// keeps the test short; the counts scale with it.
	kdfBudget = MaxKDFIterations / 10
	t.Cleanup(func() { kdfBudget = MaxKDFIterations })
	tests := []struct {
		name        string
		data        []byte
		wantErr     error
		wantDerived int // at most
	}{
		// Before: 64 derivations of 10,000 iterations, one per safe.
		{name: "64 safes sharing salt and iterations", data: manySafesPFX(t, 64, 10_000, true), wantDerived: 2},
		// Before: 16 derivations of 10,000 (and of 1,000,000 each, the
		// limit per derivation: 4 safes took 0.7 s).
		{name: "16 safes with their own salts", data: manySafesPFX(t, 16, 10_000, false), wantErr: ErrWorkLimit,
			wantDerived: 1 + kdfBudget/10_000},
		{name: "one safe over the whole budget", data: manySafesPFX(t, 1, kdfBudget+1, false), wantErr: ErrWorkLimit,
			wantDerived: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newP12Parser(testPassword)
			defer p.close()
			_, err := p.parse(tc.data)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				assert.Contains(t, err.Error(), "keystore: ")
			} else {
				require.NoError(t, err)
			}
			assert.LessOrEqual(t, p.kdf.derived, tc.wantDerived, "key derivations")
			assert.GreaterOrEqual(t, p.kdf.left, 0)
		})
	}
}

// chainAttack is the second attack of issue 11 item 5: keys key entries
// (plain key bags, no derivation) whose leaves a CA named "CN=CA" signed,
// after namesakes certificates of other keys also named "CN=CA" and keys
// copies of the real CA's bag. With forged leaves, no certificate of the
// file signed them.
type chainAttack struct {
	keys, namesakes int
	forged          bool
}

func (a chainAttack) build(t testing.TB) []byte {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return k
	}
	name := pkix.Name{CommonName: "CA"}
	serial := int64(0)
	mint := func(subject pkix.Name, isCA bool, pub any, parent *x509.Certificate, signer *ecdsa.PrivateKey) *x509.Certificate {
		serial++
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: subject,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: isCA, BasicConstraintsValid: isCA}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c
	}
	caKey := newKey()
	ca := mint(name, true, caKey.Public(), nil, caKey)
	var bags []safeBag
	for range a.namesakes {
		k := newKey()
		bag, err := newCertBag(mint(name, true, k.Public(), nil, k).Raw)
		require.NoError(t, err)
		bags = append(bags, bag)
	}
	for range a.keys {
		bag, err := newCertBag(ca.Raw)
		require.NoError(t, err)
		bags = append(bags, bag)
	}
	signer, parent := caKey, ca
	if a.forged {
		// A "CN=CA" key whose certificate is not in the file.
		signer = newKey()
		parent = mint(name, true, signer.Public(), nil, signer)
	}
	leafKey := newKey()
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	require.NoError(t, err)
	for i := range a.keys {
		leaf := mint(pkix.Name{CommonName: fmt.Sprintf("host%d", i)}, false, leafKey.Public(), parent, signer)
		alias, err := bmpAttribute(oidFriendlyName, fmt.Sprintf("k%d", i))
		require.NoError(t, err)
		idDER, err := asn1.Marshal(fmt.Appendf(nil, "id %d", i))
		require.NoError(t, err)
		id := bagAttribute{ID: oidLocalKeyID, Values: setOf(idDER)}
		bag, err := newCertBag(leaf.Raw, alias, id)
		require.NoError(t, err)
		bags = append(bags, bag, safeBag{ID: oidKeyBag, Value: explicit(keyDER), Attributes: []bagAttribute{alias, id}})
	}
	safe, err := asn1.Marshal(bags)
	require.NoError(t, err)
	data, err := asn1.Marshal(safe)
	require.NoError(t, err)
	content, err := asn1.Marshal([]contentInfo{{ContentType: oidData, Content: explicit(data)}})
	require.NoError(t, err)
	pfx, err := marshalPFX(content, testPassword, rand.Reader, 1)
	require.NoError(t, err)
	return pfx
}

// TestHostileChainBuilding: duplicate CA bags are read once, and the
// issuer that verified one leaf is tried first for the next, so 200 keys
// among 200 namesakes of their CA cost about 400 signature checks where
// every key used to try every namesake (40,200 checks, 3.4 s). Leaves no
// certificate signed stop at MaxSignatureChecks with ErrWorkLimit.
func TestHostileChainBuilding(t *testing.T) {
	tests := []struct {
		name       string
		attack     chainAttack
		wantErr    error
		wantChecks int // at most
	}{
		{name: "200 keys, 200 namesakes, 200 copies of the CA", attack: chainAttack{keys: 200, namesakes: 200}, wantChecks: 200 + 200},
		{name: "one key, 200 namesakes", attack: chainAttack{keys: 1, namesakes: 200}, wantChecks: 201},
		{name: "200 forged leaves, 200 namesakes", attack: chainAttack{keys: 200, namesakes: 200, forged: true},
			wantErr: ErrWorkLimit, wantChecks: MaxSignatureChecks},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newP12Parser(testPassword)
			defer p.close()
			ks, err := p.parse(tc.attack.build(t))
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
			} else {
				require.NoError(t, err)
				require.Len(t, ks.Aliases(), tc.attack.keys)
				for _, a := range ks.Aliases() {
					_, chain, err := ks.PrivateKey(a)
					require.NoError(t, err)
					require.Len(t, chain, 2, a)
					assert.Equal(t, "CA", chain[1].Subject.CommonName)
					assert.NoError(t, chain[0].CheckSignatureFrom(chain[1]), a)
				}
			}
			assert.LessOrEqual(t, p.certs.checks, tc.wantChecks, "signature checks")
			// Each distinct certificate was parsed once: the copies of
			// the CA collapsed into one.
			assert.Equal(t, tc.attack.namesakes+1+tc.attack.keys, len(p.certs.certs))
		})
	}
}

// BenchmarkHostilePKCS12 parses the two attacks of issue 11 item 5 and
// reports, against a baseline measured in the same run, the work the
// parser did before the fix: one PBKDF2 per safe, and one signature check
// per key and namesake of its CA. x-before is this parser's time over
// that baseline's.
func BenchmarkHostilePKCS12(b *testing.B) {
	b.Run("64 safes sharing parameters", func(b *testing.B) {
		data := manySafesPFX(b, 64, 10_000, true)
		salt := bytes.Repeat([]byte{7}, 16)
		compare(b, func() {
			if _, err := Parse(data, testPassword); err != nil {
				b.Fatal(err)
			}
		}, func() {
			for range 64 { // before: every safe derived its key
				if _, err := pbkdf2Key(sha256.New, testPassword, salt, 10_000, 32); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("50 keys among 50 namesakes", func(b *testing.B) {
		attack := chainAttack{keys: 50, namesakes: 50}
		data := attack.build(b)
		p := newP12Parser(testPassword)
		ks, err := p.parse(data)
		if err != nil {
			b.Fatal(err)
		}
		_, chain, err := ks.PrivateKey("k0")
		if err != nil {
			b.Fatal(err)
		}
		leaf, ca := chain[0], chain[1]
		compare(b, func() {
			if _, err := Parse(data, testPassword); err != nil {
				b.Fatal(err)
			}
		}, func() {
			// before: every key tried every namesake of its CA
			for range attack.keys * (attack.namesakes + 1) {
				_ = leaf.CheckSignatureFrom(ca)
			}
		})
	})
}

// compare runs candidate and baseline alternately and reports their
// medians and ratio.
func compare(b *testing.B, candidate, baseline func()) {
	var cand, base []time.Duration
	for b.Loop() {
		t0 := time.Now()
		candidate()
		t1 := time.Now()
		baseline()
		cand, base = append(cand, t1.Sub(t0)), append(base, time.Since(t1))
	}
	mc, mb := median(cand), median(base)
	b.ReportMetric(float64(mc.Nanoseconds()), "ns/parse")
	b.ReportMetric(float64(mb.Nanoseconds()), "ns/before")
	b.ReportMetric(float64(mc)/float64(mb), "x-before")
}

// hostileSeeds are the fuzz seeds of the two attacks, small enough for
// the fuzz targets' lowered budgets (fuzzBudgets): safes of 50 PBKDF2
// iterations sharing their salt (which read) or not (which exceed the
// budget), and 6 keys among 6 namesakes of their CA, with real leaves
// (which read in 11 checks) or forged ones (which exceed the budget).
var hostileSeeds = []struct {
	file  string
	build func(t testing.TB) []byte
}{
	{"hostile-safes-shared.p12", func(t testing.TB) []byte { return manySafesPFX(t, 16, 50, true) }},
	{"hostile-safes-distinct.p12", func(t testing.TB) []byte { return manySafesPFX(t, 16, 50, false) }},
	{"hostile-chain.p12", chainAttack{keys: 6, namesakes: 6}.build},
	{"hostile-forged.p12", chainAttack{keys: 6, namesakes: 6, forged: true}.build},
}

// TestHostileSeeds checks the seed files under the fuzz targets' budget;
// KVMPKI_UPDATE_TESTDATA=1 writes them anew.
func TestHostileSeeds(t *testing.T) {
	fuzzBudgets(t)
	for _, s := range hostileSeeds {
		t.Run(s.file, func(t *testing.T) {
			path := filepath.Join("testdata", s.file)
			if os.Getenv("KVMPKI_UPDATE_TESTDATA") == "1" {
				require.NoError(t, os.WriteFile(path, s.build(t), 0o644))
			}
			p := newP12Parser(testPassword)
			defer p.close()
			_, err := p.parse(readFile(t, path))
			if strings.Contains(s.file, "distinct") || strings.Contains(s.file, "forged") {
				require.ErrorIs(t, err, ErrWorkLimit)
			} else {
				require.NoError(t, err)
			}
			assert.LessOrEqual(t, p.kdf.derived, 2)
			assert.LessOrEqual(t, p.certs.checks, signatureBudget)
		})
	}
}

// fuzzBudgets lowers the work budgets for the fuzz targets, so that they
// spend their time on structure rather than on hashing and signature
// checks, and lowers the iterations written to match; t's cleanup puts
// them back.
func fuzzBudgets(t testing.TB) {
	kdfBudget, writeIterations, signatureBudget = 100, 1, 32
	t.Cleanup(func() {
		kdfBudget, writeIterations, signatureBudget = MaxKDFIterations, pkcs12Iterations, MaxSignatureChecks
	})
}
