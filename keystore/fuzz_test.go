package keystore

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds JKS and PKCS #12 bytes to Parse: it must never panic,
// must fail only with the package's errors, and what it accepts must
// re-encode to a keystore that parses to the same entries.
func FuzzLoad(f *testing.F) {
	// Hashing dominates under coverage instrumentation (keytool's 10,000
	// PBKDF2 iterations take a second per input), so the fuzzer works on
	// stores written with one iteration (fuzz-seed.*, see
	// testdata/README.md) and refuses more than 100. keytool-jks.jks is left
	// out: its RSA key is slow to parse under instrumentation, and
	// TestReadKeytoolTestdata reads it. Seeds are files, not generated,
	// because the fuzzing engine needs the same seeds in every process.
	fuzzBudgets(f)
	for _, data := range seedFiles(f, "keytool-default.jks", "fuzz-seed.jks", "fuzz-seed.p12") {
		f.Add(data, testPassword)
		f.Add(data, []byte("wrong-password"))
	}
	f.Add([]byte{0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, 0, 0, 0, 0}, testPassword)
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x03}, testPassword)
	f.Fuzz(func(t *testing.T, data, password []byte) {
		ks := parseAndRead(t, data, password)
		if ks == nil {
			return
		}
		if checkPassword(password, ks.Format()) != nil {
			return
		}
		out, err := ks.Marshal(FormatUnknown, password)
		if err != nil {
			if !isPackageError(err) && !strings.HasPrefix(err.Error(), "keystore: ") {
				t.Fatalf("Marshal: foreign error %v", err)
			}
			return
		}
		again, err := Parse(out, password)
		if err != nil {
			t.Fatalf("re-parsing our own output: %v", err)
		}
		// What was accepted survives re-encoding entry for entry (salts
		// are random, so the bytes differ).
		if got, want := again.Aliases(), ks.Aliases(); !equalStrings(got, want) {
			t.Fatalf("aliases %v after re-encoding, want %v", got, want)
		}
		for a, e := range ks.entries {
			g := again.entries[a]
			if !bytes.Equal(g.key, e.key) || len(g.chain) != len(e.chain) {
				t.Fatalf("entry %q changed by re-encoding", a)
			}
			for i := range e.chain {
				if !bytes.Equal(g.chain[i], e.chain[i]) {
					t.Fatalf("entry %q certificate %d changed by re-encoding", a, i)
				}
			}
		}
	})
}

// FuzzProperties parses agent.properties content: no panic, only the
// package's errors, a byte-for-byte round trip when nothing changes, and
// after setting the passphrase, every other key keeps its value.
func FuzzProperties(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", PropertiesFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("a=b\r\nkeystore.passphrase=\\\n x\rc:d"))
	f.Add([]byte("k\\u00e9y = v\\\\\n#c\\\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProperties(data)
		if err != nil {
			if !isPackageError(err) {
				t.Fatalf("foreign error: %v", err)
			}
			return
		}
		if !bytes.Equal(p.Bytes(), data) {
			t.Fatalf("round trip changed the file:\n%q\n%q", data, p.Bytes())
		}
		before := map[string]string{}
		for _, l := range p.lines {
			if l.entry {
				before[l.key] = string(l.value)
			}
		}
		if err := p.Set(PassphraseProperty, []byte("NEWPASS")); err != nil {
			t.Fatal(err)
		}
		again, err := ParseProperties(p.Bytes())
		if err != nil {
			t.Fatalf("re-parsing after Set: %v", err)
		}
		if v, _ := again.Lookup(PassphraseProperty); string(v) != "NEWPASS" {
			t.Fatalf("passphrase %q after Set", v)
		}
		for k, v := range before {
			if k == PassphraseProperty {
				continue
			}
			if got, ok := again.Lookup(k); !ok || string(got) != v {
				t.Fatalf("key %q changed from %q to %q", k, v, got)
			}
		}
	})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// parseAndRead parses data and reads every entry, failing t on an error
// that is not the package's. It returns nil when data does not parse.
func parseAndRead(t *testing.T, data, password []byte) *KeyStore {
	t.Helper()
	ks, err := Parse(data, password)
	if err != nil {
		if !isPackageError(err) {
			t.Fatalf("Parse returned a foreign error: %v", err)
		}
		return nil
	}
	for _, a := range ks.Aliases() {
		if typ, _ := ks.EntryType(a); typ == PrivateKeyEntry {
			// Keys and certificates are parsed lazily; their errors
			// must be the package's too.
			if _, _, err := ks.PrivateKey(a); err != nil && !isPackageError(err) {
				t.Fatalf("PrivateKey(%q): foreign error %v", a, err)
			}
		} else if _, err := ks.TrustedCert(a); err != nil && !isPackageError(err) {
			t.Fatalf("TrustedCert(%q): foreign error %v", a, err)
		}
	}
	return ks
}

// seedFiles reads the named files of testdata and the hostile PKCS #12
// files of issue 11 item 5 (hostileSeeds), in that order.
func seedFiles(f *testing.F, names ...string) [][]byte {
	for _, s := range hostileSeeds {
		names = append(names, s.file)
	}
	var files [][]byte
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		files = append(files, data)
	}
	return files
}
