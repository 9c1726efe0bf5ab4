package keystore

import (
	"crypto/rand"
	"crypto/sha1"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzAuthenticatedSafe and FuzzAuthenticatedJKS fuzz what a PKCS #12 file holds behind its MAC:
// FuzzLoad's mutations break the MAC (the JKS digest), so they never reach
// the bags, the decryption or the assembly of entries. Each input gets a
// valid MAC (digest) for the test password, as anyone who knows a store's
// password can give it.
func FuzzAuthenticatedSafe(f *testing.F) {
	fuzzBudgets(f)
	for i, data := range seedFiles(f, "fuzz-seed.p12") {
		_, content, err := unmarshalPFX(data)
		if err != nil {
			f.Fatal(err)
		}
		if i == 0 {
			if _, err := Parse(data, testPassword); err != nil {
				f.Fatalf("the seed must open with the test password: %v", err)
			}
		}
		f.Add(content)
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		wrapped, err := marshalPFX(content, testPassword, rand.Reader, writeIterations)
		if err != nil {
			return // not DER-encodable as an OCTET STRING: no file to parse
		}
		checkParsed(t, wrapped)
	})
}

func FuzzAuthenticatedJKS(f *testing.F) {
	fuzzBudgets(f)
	data, err := os.ReadFile(filepath.Join("testdata", "fuzz-seed.jks"))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := Parse(data, testPassword); err != nil {
		f.Fatalf("the seed must open with the test password: %v", err)
	}
	f.Add(data[:len(data)-sha1.Size]) // everything but the digest
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) < len(jksMagic) {
			return
		}
		body = append(append([]byte(nil), jksMagic...), body[len(jksMagic):]...)
		h := sha1.New()
		h.Write(jksPassword(testPassword))
		h.Write(jksWhitener)
		h.Write(body)
		checkParsed(t, h.Sum(body))
	})
}

// checkParsed parses data with the test password and reads every entry:
// only the package's errors, never a panic.
func checkParsed(t *testing.T, data []byte) {
	t.Helper()
	ks := parseAndRead(t, data, testPassword)
	if ks == nil {
		return
	}
	if _, err := ks.Marshal(FormatUnknown, testPassword); err != nil && !isPackageError(err) && !strings.HasPrefix(err.Error(), "keystore: ") {
		t.Fatalf("Marshal: foreign error %v", err)
	}
}
