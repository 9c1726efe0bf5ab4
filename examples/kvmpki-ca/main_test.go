package main

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// The CA key passwords of these tests. Neither may ever appear in an
// output or an error: every call through runCLI checks that.
const (
	testPassword  = "Tr0ub4dor&3-ca-key-pw"
	wrongPassword = "hunter2-not-the-ca-pw"
)

// pwEnv is an environment that holds the right password.
var pwEnv = map[string]string{PasswordEnv: testPassword}

// result is what one in-process invocation of the command produced.
type result struct {
	stdout, stderr string
	err            error
}

// runCLI runs the command in-process with env as its environment, and
// checks that no password leaked into its output or error.
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), args, &stdout, &stderr, func(k string) string { return env[k] })
	r := result{stdout: stdout.String(), stderr: stderr.String(), err: err}
	assertNoSecrets(t, r.stdout, r.stderr, errString(err))
	return r
}

// mustRun runs the command with the right password and requires success.
// It returns standard output.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := runCLI(t, pwEnv, args...)
	require.NoError(t, r.err, "kvmpki-ca %s\nstderr: %s", strings.Join(args, " "), r.stderr)
	return r.stdout
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func assertNoSecrets(t *testing.T, outputs ...string) {
	t.Helper()
	for _, out := range outputs {
		for _, secret := range []string{testPassword, wrongPassword} {
			assert.NotContains(t, out, secret, "a password leaked into the output")
		}
	}
}

// isUsage reports whether err is a usage error (exit status 2).
func isUsage(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}

// bundle returns the CA certificate bundle of dir, as the bundle command
// prints it, and the CA certificate.
func bundle(t *testing.T, dir string) ([]byte, *x509.Certificate) {
	t.Helper()
	out := mustRun(t, "bundle", "-dir", dir)
	certs := parseCertsPEM(t, []byte(out))
	require.Len(t, certs, 1, "a root CA's bundle holds the root alone")
	return []byte(out), certs[0]
}

// parseCertsPEM parses PEM data that must hold CERTIFICATE blocks only.
func parseCertsPEM(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		require.Equal(t, "CERTIFICATE", b.Type)
		c, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		certs = append(certs, c)
	}
	require.Empty(t, bytes.TrimSpace(rest), "trailing data after the PEM blocks")
	require.NotEmpty(t, certs, "no PEM certificate")
	return certs
}

// readCert reads a certificate file written by issue -out.
func readCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	certs := parseCertsPEM(t, data)
	require.Len(t, certs, 1, "issue -out writes the leaf alone")
	return certs[0]
}

// listEntry is one line of the list command.
type listEntry struct {
	serial, status, subject string
	notAfter                time.Time
}

var hexSerial = regexp.MustCompile(`^[0-9a-f]+$`)

// list runs the list command and parses its lines, keyed by serial.
func list(t *testing.T, dir string) map[string]listEntry {
	t.Helper()
	out := mustRun(t, "list", "-dir", dir)
	entries := map[string]listEntry{}
	if out == "" {
		return entries
	}
	require.True(t, strings.HasSuffix(out, "\n"), "list output ends with a newline")
	for line := range strings.SplitSeq(strings.TrimSuffix(out, "\n"), "\n") {
		f := strings.SplitN(line, " ", 4)
		require.Len(t, f, 4, "list line %q: want serial, status, not-after, subject", line)
		require.Regexp(t, hexSerial, f[0], "serial in lower-case hex")
		notAfter, err := time.Parse(time.RFC3339, f[2])
		require.NoError(t, err, "not-after in RFC 3339")
		require.Equal(t, time.UTC, notAfter.Location(), "not-after in UTC")
		require.NotContains(t, entries, f[0], "serial listed twice")
		entries[f[0]] = listEntry{serial: f[0], status: f[1], notAfter: notAfter, subject: f[3]}
	}
	return entries
}

func hexOf(n *big.Int) string { return n.Text(16) }

// assertValidity checks that c is valid for days from an issuance between
// before and after (NotAfter is the truncated issuance time plus days).
func assertValidity(t *testing.T, c *x509.Certificate, days int, before, after time.Time) {
	t.Helper()
	d := time.Duration(days) * 24 * time.Hour
	lo := before.UTC().Truncate(time.Second).Add(d)
	hi := after.UTC().Add(d)
	assert.False(t, c.NotAfter.Before(lo) || c.NotAfter.After(hi),
		"NotAfter %v not within [%v, %v] for %d days", c.NotAfter, lo, hi, days)
	assert.True(t, c.NotBefore.Before(before), "NotBefore %v is not before the issuance", c.NotBefore)
}

// writeFile writes a test input file in a fresh directory.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

// fixtureCA makes a CA in a fresh directory through rootca's API, as
// init would but for one thing: its key is encrypted with 1,000 PBKDF2
// iterations, not rootca's 600,000. Decryption reads the count from the
// stored key, so every command opens this CA in milliseconds, where the
// real count costs 0.15 s per open, and 2 s under the race detector.
// TestInit covers the CAs init makes; TestBinary runs the whole lifecycle
// on one.
func fixtureCA(t *testing.T, subject string) string {
	t.Helper()
	name, err := rootca.ParseDN(subject)
	require.NoError(t, err)
	cert, key, err := rootca.NewRoot(&rootca.CreateOptions{Subject: name})
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "ca")
	require.NoError(t, os.Mkdir(dir, 0o700))
	store, err := sqlite.Open(t.Context(), filepath.Join(dir, dbFileName))
	require.NoError(t, err)
	defer store.Close()
	require.NoError(t, store.CreateAuthority(t.Context(), &rootca.Authority{
		Certificates: [][]byte{cert.Raw},
		Key:          encryptKeyCheaply(t, key, testPassword),
	}))
	return dir
}

// The PBES2 structure of an encrypted PKCS #8 key (RFC 8018), as rootca
// writes it.
type (
	encryptedKeyInfo struct {
		Algorithm pbes2Algorithm
		Data      []byte
	}
	pbes2Algorithm struct {
		Algorithm asn1.ObjectIdentifier
		Params    pbes2Params
	}
	pbes2Params struct {
		KDF kdfAlgorithm
		Enc encAlgorithm
	}
	kdfAlgorithm struct {
		Algorithm asn1.ObjectIdentifier
		Params    pbkdf2Params
	}
	pbkdf2Params struct {
		Salt       []byte
		Iterations int
		PRF        pkix.AlgorithmIdentifier
	}
	encAlgorithm struct {
		Algorithm asn1.ObjectIdentifier
		IV        []byte
	}
)

// encryptKeyCheaply encrypts key as rootca does (PBES2,
// PBKDF2-HMAC-SHA256, AES-256-CBC) with 1,000 iterations.
func encryptKeyCheaply(t *testing.T, key crypto.Signer, password string) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	salt, iv := make([]byte, 16), make([]byte, aes.BlockSize)
	_, _ = rand.Read(salt)
	_, _ = rand.Read(iv)
	k, err := pbkdf2.Key(sha256.New, password, salt, 1000, 32)
	require.NoError(t, err)
	block, err := aes.NewCipher(k)
	require.NoError(t, err)
	pad := aes.BlockSize - len(der)%aes.BlockSize
	data := append(der, bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(data, data)
	info, err := asn1.Marshal(encryptedKeyInfo{
		Algorithm: pbes2Algorithm{
			Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}, // PBES2
			Params: pbes2Params{
				KDF: kdfAlgorithm{
					Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}, // PBKDF2
					Params: pbkdf2Params{Salt: salt, Iterations: 1000, PRF: pkix.AlgorithmIdentifier{
						Algorithm:  asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}, // hmacWithSHA256
						Parameters: asn1.NullRawValue,
					}},
				},
				Enc: encAlgorithm{Algorithm: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, IV: iv}, // AES-256-CBC
			},
		},
		Data: data,
	})
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: info})
}

// storedCACert reads the CA certificate from dir's store, without the key
// (and so without the cost of decrypting it).
func storedCACert(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	store, err := sqlite.Open(t.Context(), filepath.Join(dir, dbFileName))
	require.NoError(t, err)
	defer store.Close()
	auth, err := store.LoadAuthority(t.Context())
	require.NoError(t, err)
	require.Len(t, auth.Certificates, 1, "a root CA")
	c, err := x509.ParseCertificate(auth.Certificates[0])
	require.NoError(t, err)
	return c
}

// TestInit makes real CAs with init. Each costs two PBKDF2 runs (the key
// is encrypted, then loaded back), so the cases are few and combine flags.
func TestInit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// failFirst runs a failing init in the directory first: it must
		// not stand in the way of the next one.
		failFirst   bool
		args        []string
		wantSubject string
		wantDays    int
		wantSigAlg  x509.SignatureAlgorithm
		checkKey    func(t *testing.T, pub crypto.PublicKey)
	}{
		{
			name:        "defaults",
			wantSubject: "CN=kvmpki root CA,O=kvmpki",
			wantDays:    3650,
			wantSigAlg:  x509.ECDSAWithSHA256,
			checkKey: func(t *testing.T, pub crypto.PublicKey) {
				require.IsType(t, &ecdsa.PublicKey{}, pub, "the default CA key is ECDSA")
				assert.Equal(t, elliptic.P256(), pub.(*ecdsa.PublicKey).Curve)
			},
		},
		{
			name:        "rsa with CloudStack issuer DN",
			args:        []string{"-key-type", "rsa", "-key-size", "2048", "-issuer-dn", "CN=ca.cloudstack.apache.org"},
			wantSubject: "CN=ca.cloudstack.apache.org",
			wantDays:    3650,
			wantSigAlg:  x509.SHA256WithRSA,
			checkKey: func(t *testing.T, pub crypto.PublicKey) {
				require.IsType(t, &rsa.PublicKey{}, pub)
				assert.Equal(t, 2048, pub.(*rsa.PublicKey).N.BitLen())
			},
		},
		{
			name:      "ecdsa P-384 with validity days and multi-RDN DN, after a failed init",
			failFirst: true,
			args: []string{"-key-type", "ecdsa", "-key-size", "384", "-validity-days", "30",
				"-issuer-dn", `CN=KVM CA,OU=Cloud,O=Example\, Inc.,C=DE`},
			wantSubject: `CN=KVM CA,OU=Cloud,O=Example\, Inc.,C=DE`,
			wantDays:    30,
			wantSigAlg:  x509.ECDSAWithSHA384,
			checkKey: func(t *testing.T, pub crypto.PublicKey) {
				require.IsType(t, &ecdsa.PublicKey{}, pub)
				assert.Equal(t, elliptic.P384(), pub.(*ecdsa.PublicKey).Curve)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "ca")
			if tt.failFirst {
				r := runCLI(t, pwEnv, "init", "-dir", dir, "-key-type", "ecdsa", "-key-size", "2048")
				require.Error(t, r.err, "an ECDSA key of 2048 bits")
				r = runCLI(t, pwEnv, "list", "-dir", dir)
				require.Error(t, r.err, "a failed init leaves no CA for list to open")
				assert.ErrorContains(t, r.err, "run 'kvmpki-ca init")
			}
			before := time.Now()
			out := mustRun(t, append([]string{"init", "-dir", dir}, tt.args...)...)
			after := time.Now()

			ca := storedCACert(t, dir)
			assert.Equal(t, tt.wantSubject, ca.Subject.String())
			assert.Equal(t, tt.wantSubject, ca.Issuer.String(), "a self-signed root")
			assert.NoError(t, ca.CheckSignatureFrom(ca), "a self-signed root")
			assert.True(t, ca.IsCA)
			assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, ca.KeyUsage)
			assert.Equal(t, tt.wantSigAlg, ca.SignatureAlgorithm)
			assertValidity(t, ca, tt.wantDays, before, after)
			tt.checkKey(t, ca.PublicKey)
			assert.Equal(t, fmt.Sprintf("created CA %s in %s\nserial %x, %v, valid until %s\n", tt.wantSubject, dir,
				ca.SerialNumber, tt.wantSigAlg, ca.NotAfter.UTC().Format(time.RFC3339)), out)

			// The CA's state is private, and the password is not in it.
			fi, err := os.Stat(dir)
			require.NoError(t, err)
			assert.Zero(t, fi.Mode().Perm()&0o077, "CA directory mode %v", fi.Mode().Perm())
			files, err := filepath.Glob(filepath.Join(dir, "*"))
			require.NoError(t, err)
			require.NotEmpty(t, files)
			for _, f := range files {
				data, err := os.ReadFile(f)
				require.NoError(t, err)
				assert.NotContains(t, string(data), testPassword, "%s holds the password in clear", f)
				fi, err := os.Stat(f)
				require.NoError(t, err)
				assert.Zero(t, fi.Mode().Perm()&0o077, "%s mode %v", f, fi.Mode().Perm())
			}
		})
	}
}

func TestInitErrors(t *testing.T) {
	t.Parallel()

	t.Run("twice", func(t *testing.T) {
		dir := fixtureCA(t, "CN=first")
		ca := storedCACert(t, dir)
		r := runCLI(t, pwEnv, "init", "-dir", dir, "-issuer-dn", "CN=second")
		require.Error(t, r.err)
		assert.EqualError(t, r.err, dir+" already holds a CA")
		assert.False(t, isUsage(r.err))
		assert.Empty(t, r.stdout)
		assert.Equal(t, ca.Raw, storedCACert(t, dir).Raw, "the CA is unchanged")
	})

	t.Run("missing password creates nothing", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ca")
		r := runCLI(t, nil, "init", "-dir", dir)
		require.Error(t, r.err)
		assert.EqualError(t, r.err, "no CA key password: set $"+PasswordEnv+" or use -password-file")
		assert.False(t, isUsage(r.err))
		assert.NoDirExists(t, dir)
	})

	t.Run("bad key size", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ca")
		r := runCLI(t, pwEnv, "init", "-dir", dir, "-key-type", "rsa", "-key-size", "1024")
		require.Error(t, r.err)
		assert.ErrorContains(t, r.err, "RSA key size 1024")
	})
}

// TestNoCA runs every command that needs a CA on directories without one.
func TestNoCA(t *testing.T) {
	t.Parallel()
	csr := writeFile(t, "req.csr", newCSR(t, "h.example.org", nil, true))
	out := filepath.Join(t.TempDir(), "out")
	for _, where := range []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"missing dir", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }},
		{"empty dir", func(t *testing.T) string { return t.TempDir() }},
	} {
		for _, cmd := range []struct {
			name string
			args []string
		}{
			{"issue csr", []string{"issue", "-csr", csr, "-role", "host", "-out", out + ".crt"}},
			{"issue key-out", []string{"issue", "-key-out", out + ".key", "-role", "client", "-dns", "c.example.org", "-out", out + ".crt"}},
			{"bundle", []string{"bundle"}},
			{"revoke", []string{"revoke", "-serial", "1f", "-reason", "superseded"}},
			{"crl", []string{"crl", "-out", out + ".crl"}},
			{"list", []string{"list"}},
		} {
			t.Run(where.name+"/"+cmd.name, func(t *testing.T) {
				dir := where.dir(t)
				before, _ := os.ReadDir(dir)
				r := runCLI(t, pwEnv, append([]string{cmd.args[0], "-dir", dir}, cmd.args[1:]...)...)
				require.Error(t, r.err)
				assert.ErrorContains(t, r.err, "no CA in "+dir+" (run 'kvmpki-ca init -dir "+dir+"')")
				assert.False(t, isUsage(r.err), "not a usage error")
				assert.Empty(t, r.stdout)
				after, _ := os.ReadDir(dir)
				assert.Equal(t, before, after, "the command changed the directory")
				for _, suffix := range []string{".crt", ".key", ".crl"} {
					assert.NoFileExists(t, out+suffix)
				}
			})
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	// Usage errors come before the CA is opened: the directory does not
	// exist, and must not be created.
	dir := filepath.Join(t.TempDir(), "ca")
	tmp := t.TempDir()
	csr := writeFile(t, "req.csr", newCSR(t, "h.example.org", nil, true))
	key, out := filepath.Join(tmp, "k.pem"), filepath.Join(tmp, "c.pem")
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantStd string // in stderr
	}{
		{"no command", nil, "no command", "commands:"},
		{"unknown command", []string{"frobnicate", "-dir", dir}, `unknown command "frobnicate"`, "commands:"},
		{"unknown flag", []string{"init", "-dir", dir, "-bogus"}, "flag provided but not defined: -bogus", "-issuer-dn"},
		{"password as a flag", []string{"list", "-dir", dir, "-password", testPassword}, "flag provided but not defined: -password", "-password-file"},
		{"extra argument", []string{"list", "-dir", dir, "extra"}, `unexpected argument "extra"`, ""},
		{"bad flag value", []string{"init", "-dir", dir, "-validity-days", "ten"}, "invalid value", ""},

		{"init missing dir", []string{"init"}, "-dir or -db is required", ""},
		{"issue missing dir", []string{"issue", "-key-out", key, "-role", "host", "-dns", "h.example.org", "-out", out}, "-dir or -db is required", ""},
		{"bundle missing dir", []string{"bundle"}, "-dir or -db is required", ""},
		{"revoke missing dir", []string{"revoke", "-serial", "1f"}, "-dir or -db is required", ""},
		{"crl missing dir", []string{"crl", "-out", out}, "-dir or -db is required", ""},
		{"list missing dir", []string{"list"}, "-dir or -db is required", ""},
		{"dir and db", []string{"list", "-dir", dir, "-db", "postgres://ca@127.0.0.1/ca"}, "-dir and -db exclude each other", ""},

		{"init unknown key type", []string{"init", "-dir", dir, "-key-type", "dsa"}, `unknown key type "dsa"`, ""},
		{"init zero validity", []string{"init", "-dir", dir, "-validity-days", "0"}, "-validity-days must be between 1 and", ""},
		{"init negative validity", []string{"init", "-dir", dir, "-validity-days", "-5"}, "-validity-days must be between 1 and", ""},
		{"init overflowing validity", []string{"init", "-dir", dir, "-validity-days", "200000"}, "-validity-days must be between 1 and 106751", ""},
		{"init bad issuer DN", []string{"init", "-dir", dir, "-issuer-dn", "ca.cloudstack.apache.org"}, "lacks '='", ""},
		{"init unknown DN attribute", []string{"init", "-dir", dir, "-issuer-dn", "XX=ca"}, "unknown attribute type", ""},

		{"issue missing role", []string{"issue", "-dir", dir, "-key-out", key, "-dns", "h.example.org", "-out", out}, "-role is required", ""},
		{"issue unknown role", []string{"issue", "-dir", dir, "-key-out", key, "-role", "admin", "-dns", "h.example.org", "-out", out}, `unknown role "admin"`, ""},
		{"issue csr and key-out", []string{"issue", "-dir", dir, "-csr", csr, "-key-out", key, "-role", "host", "-out", out}, "give exactly one of -csr and -key-out", ""},
		{"issue neither csr nor key-out", []string{"issue", "-dir", dir, "-role", "host", "-dns", "h.example.org", "-out", out}, "give exactly one of -csr and -key-out", ""},
		{"issue missing out", []string{"issue", "-dir", dir, "-csr", csr, "-role", "host"}, "-out is required", ""},
		{"issue bad ip", []string{"issue", "-dir", dir, "-csr", csr, "-role", "host", "-ip", "10.0.0.300", "-out", out}, `-ip: "10.0.0.300" is not an IP address`, ""},
		{"issue negative validity", []string{"issue", "-dir", dir, "-csr", csr, "-role", "host", "-validity-days", "-1", "-out", out}, "-validity-days must be between 0 and", ""},
		{"issue overflowing validity", []string{"issue", "-dir", dir, "-csr", csr, "-role", "host", "-validity-days", "106752", "-out", out}, "-validity-days must be between 0 and 106751", ""},
		{"issue unknown key type", []string{"issue", "-dir", dir, "-key-out", key, "-role", "host", "-dns", "h.example.org", "-key-type", "ed25519", "-out", out}, `unknown key type "ed25519"`, ""},

		{"revoke missing serial", []string{"revoke", "-dir", dir}, "-serial is required", ""},
		{"revoke bad serial", []string{"revoke", "-dir", dir, "-serial", "xyz"}, `serial "xyz"`, ""},
		{"revoke zero serial", []string{"revoke", "-dir", dir, "-serial", "0"}, "not a positive number", ""},
		{"revoke unknown reason", []string{"revoke", "-dir", dir, "-serial", "1f", "-reason", "lostLaptop"}, `unknown revocation reason "lostLaptop"`, ""},

		{"crl missing out", []string{"crl", "-dir", dir}, "-out is required", ""},
		{"crl onto the CA database", []string{"crl", "-dir", dir, "-out", filepath.Join(dir, "ca.db")}, "is the CA's database", ""},
		{"issue onto the CA database", []string{"issue", "-dir", dir, "-csr", csr, "-role", "host", "-out", filepath.Join(dir, "ca.db-wal")}, "is the CA's database", ""},
		{"key onto the CA database", []string{"issue", "-dir", dir, "-key-out", filepath.Join(dir, "ca.db"), "-role", "host", "-dns", "h.example.org", "-out", out}, "is the CA's database", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, pwEnv, tt.args...)
			require.Error(t, r.err)
			assert.True(t, isUsage(r.err), "want a *usageError (exit 2), got %T: %v", r.err, r.err)
			assert.ErrorContains(t, r.err, tt.wantErr)
			assert.Contains(t, r.stderr, tt.wantStd)
			assert.Empty(t, r.stdout, "errors go to stderr")
			assert.NoDirExists(t, dir, "a usage error must not touch the CA directory")
			assert.NoFileExists(t, key)
			assert.NoFileExists(t, out)
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantErr    error
		wantStdout string
		wantStderr string
	}{
		{"help command", []string{"help"}, nil, "commands:", ""},
		{"-h", []string{"-h"}, nil, "commands:", ""},
		{"init -h", []string{"init", "-h"}, flag.ErrHelp, "", "-key-type"},
		{"issue -help", []string{"issue", "-help"}, flag.ErrHelp, "", "-key-out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, tt.args...)
			if tt.wantErr == nil {
				require.NoError(t, r.err)
			} else {
				require.ErrorIs(t, r.err, tt.wantErr)
				assert.False(t, isUsage(r.err), "help exits 0, not 2")
			}
			assert.Contains(t, r.stdout, tt.wantStdout)
			assert.Contains(t, r.stderr, tt.wantStderr)
		})
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	dir := fixtureCA(t, "CN=password test CA")
	fileWith := func(content string) string { return writeFile(t, "pw", []byte(content)) }
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string // empty: success
	}{
		{name: "env", env: pwEnv},
		{name: "file with trailing newline", args: []string{"-password-file", fileWith(testPassword + "\n")}},
		{name: "file with CRLF", args: []string{"-password-file", fileWith(testPassword + "\r\n")}},
		{name: "file without newline", args: []string{"-password-file", fileWith(testPassword)}},
		{name: "wrong env", env: map[string]string{PasswordEnv: wrongPassword}, wantErr: "incorrect CA key password"},
		{name: "wrong file", args: []string{"-password-file", fileWith(wrongPassword + "\n")}, wantErr: "incorrect CA key password"},
		{name: "missing", wantErr: "no CA key password: set $" + PasswordEnv + " or use -password-file"},
		{name: "empty env", env: map[string]string{PasswordEnv: ""}, wantErr: "no CA key password"},
		{name: "empty file", args: []string{"-password-file", fileWith("\n")}, wantErr: "password file: secret: empty"},
		{name: "missing file", args: []string{"-password-file", filepath.Join(t.TempDir(), "nope")}, wantErr: "password file: secret: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.env, append([]string{"list", "-dir", dir}, tt.args...)...)
			if tt.wantErr == "" {
				require.NoError(t, r.err, r.stderr)
				return
			}
			require.Error(t, r.err)
			assert.ErrorContains(t, r.err, tt.wantErr)
			assert.False(t, isUsage(r.err), "a password error is not a usage error")
			assert.Empty(t, r.stdout)
		})
	}
}

// newCSR returns a CSR for an ECDSA P-256 key, PEM or DER.
func newCSR(t *testing.T, cn string, dnsNames []string, asPEM bool) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: cn},
		DNSNames: dnsNames,
	}, key)
	require.NoError(t, err)
	if asPEM {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	return der
}

// parseCSRFile parses a CSR file, PEM or DER.
func parseCSRFile(t *testing.T, name string) *x509.CertificateRequest {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	if b, _ := pem.Decode(data); b != nil {
		data = b.Bytes
	}
	csr, err := x509.ParseCertificateRequest(data)
	require.NoError(t, err)
	return csr
}

// readKeyFile checks a key written by issue -key-out (mode 0600, one
// PKCS #8 PEM block) and returns the key.
func readKeyFile(t *testing.T, name string) crypto.Signer {
	t.Helper()
	fi, err := os.Stat(name)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "key file mode")
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	b, rest := pem.Decode(data)
	require.NotNil(t, b, "key file holds no PEM")
	assert.Empty(t, rest, "key file holds more than one PEM block")
	require.Equal(t, "PRIVATE KEY", b.Type, "a PKCS #8 PEM block")
	assert.Empty(t, b.Headers, "an unencrypted key")
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	require.NoError(t, err)
	signer, ok := k.(crypto.Signer)
	require.True(t, ok)
	return signer
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func ipStrings(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// issued is a certificate issued during TestLifecycle.
type issued struct {
	name string
	cert *x509.Certificate
	role string
}

// TestLifecycle drives one CA through issue, bundle, list, revoke and crl.
// Its steps depend on each other and run in order.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	dir := fixtureCA(t, "CN=ca.cloudstack.apache.org")
	assert.Empty(t, list(t, dir), "a new CA has issued nothing")
	pemBundle, caCert := bundle(t, dir)
	assert.Equal(t, storedCACert(t, dir).Raw, caCert.Raw, "bundle prints the CA certificate")
	assert.Equal(t, "CN=ca.cloudstack.apache.org", caCert.Subject.String())
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pemBundle))
	tmp := t.TempDir()
	var certs []issued

	ekus := map[string][]x509.ExtKeyUsage{
		"host":   {x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		"client": {x509.ExtKeyUsageClientAuth},
		"server": {x509.ExtKeyUsageServerAuth},
	}
	// checkLeaf checks what every leaf of role must carry.
	checkLeaf := func(t *testing.T, c *x509.Certificate, role string) {
		t.Helper()
		assert.ElementsMatch(t, ekus[role], c.ExtKeyUsage, "EKU of a %s certificate", role)
		assert.False(t, c.IsCA)
		assert.True(t, c.BasicConstraintsValid)
		assert.Equal(t, caCert.Subject.String(), c.Issuer.String())
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			_, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
			if slices.Contains(ekus[role], usage) {
				assert.NoError(t, err, "bundle verifies the %s certificate for %v", role, usage)
			} else {
				assert.Error(t, err, "a %s certificate must not verify for %v", role, usage)
			}
		}
	}

	t.Run("issue with key-out", func(t *testing.T) {
		tests := []struct {
			name      string
			role      string
			args      []string
			days      int
			wantDNS   []string
			wantIPs   []string
			wantCN    string
			checkKey  func(t *testing.T, k crypto.Signer)
			wantUsage x509.KeyUsage
		}{
			{
				name: "host", role: "host",
				args:    []string{"-dns", "kvm1.example.org,kvm1-mgmt.example.org", "-ip", "192.0.2.11,2001:db8::11", "-validity-days", "30", "-key-type", "ecdsa"},
				days:    30,
				wantDNS: []string{"kvm1.example.org", "kvm1-mgmt.example.org"},
				wantIPs: []string{"192.0.2.11", "2001:db8::11"},
				wantCN:  "kvm1.example.org",
			},
			{
				name: "client", role: "client",
				args:    []string{"-dns", "agent.example.org", "-validity-days", "7", "-key-type", "ecdsa", "-key-size", "384"},
				days:    7,
				wantDNS: []string{"agent.example.org"},
				wantCN:  "agent.example.org",
				checkKey: func(t *testing.T, k crypto.Signer) {
					assert.Equal(t, elliptic.P384(), k.Public().(*ecdsa.PublicKey).Curve)
				},
			},
			{
				name: "server with IP only", role: "server",
				args:    []string{"-ip", "198.51.100.20", "-key-type", "ec"},
				days:    365, // the default
				wantIPs: []string{"198.51.100.20"},
				wantCN:  "198.51.100.20",
			},
			{
				// No -key-type: the generated key defaults to RSA-2048.
				name: "server with default key and spaces in lists", role: "server",
				args:      []string{"-dns", " mgmt.example.org , ", "-validity-days", "90"},
				days:      90,
				wantDNS:   []string{"mgmt.example.org"},
				wantCN:    "mgmt.example.org",
				wantUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
				checkKey: func(t *testing.T, k crypto.Signer) {
					require.IsType(t, &rsa.PublicKey{}, k.Public())
					assert.Equal(t, 2048, k.Public().(*rsa.PublicKey).N.BitLen())
				},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				keyFile := filepath.Join(tmp, tt.name+".key")
				certFile := filepath.Join(tmp, tt.name+".crt")
				args := []string{"issue", "-dir", dir, "-key-out", keyFile, "-role", tt.role, "-out", certFile}
				before := time.Now()
				out := mustRun(t, append(args, tt.args...)...)
				after := time.Now()

				c := readCert(t, certFile)
				certs = append(certs, issued{tt.name, c, tt.role})
				checkLeaf(t, c, tt.role)
				assert.Equal(t, tt.wantDNS, c.DNSNames)
				assert.Equal(t, tt.wantIPs, ipStrings(c.IPAddresses))
				assert.Equal(t, "CN="+tt.wantCN, c.Subject.String())
				assert.Equal(t, tt.wantUsage, c.KeyUsage)
				assertValidity(t, c, tt.days, before, after)
				assert.Equal(t, "issued CN="+tt.wantCN+" serial "+hexOf(c.SerialNumber)+
					", valid until "+c.NotAfter.UTC().Format(time.RFC3339)+"\n", out)

				key := readKeyFile(t, keyFile)
				assert.True(t, samePublicKey(key.Public(), c.PublicKey), "the key file matches the certificate")
				if tt.checkKey != nil {
					tt.checkKey(t, key)
				} else {
					require.IsType(t, &ecdsa.PublicKey{}, key.Public())
					assert.Equal(t, elliptic.P256(), key.Public().(*ecdsa.PublicKey).Curve)
				}
				fi, err := os.Stat(certFile)
				require.NoError(t, err)
				assert.Zero(t, fi.Mode().Perm()&0o022, "certificate file mode %v", fi.Mode().Perm())
			})
		}
	})

	t.Run("issue from CSR", func(t *testing.T) {
		tests := []struct {
			name    string
			csr     string
			role    string
			args    []string
			wantCN  string
			wantDNS []string
			wantIPs []string
		}{
			{
				name: "PEM", role: "host",
				csr:     writeFile(t, "pem.csr", newCSR(t, "kvm2.example.org", []string{"kvm2.example.org", "kvm2-alt.example.org"}, true)),
				args:    []string{"-dns", "kvm2-mgmt.example.org", "-ip", "192.0.2.12", "-validity-days", "10", "-insecure-allow-csr-names"},
				wantCN:  "kvm2.example.org",
				wantDNS: []string{"kvm2-mgmt.example.org", "kvm2.example.org", "kvm2-alt.example.org"},
				wantIPs: []string{"192.0.2.12"},
			},
			{
				name: "DER", role: "client",
				csr:     writeFile(t, "der.csr", newCSR(t, "agent2.example.org", nil, false)),
				args:    []string{"-dns", "agent2.example.org"},
				wantCN:  "agent2.example.org",
				wantDNS: []string{"agent2.example.org"},
			},
			{
				name: "OpenSSL PEM", role: "server",
				csr: filepath.Join("testdata", "openssl-host.csr"),
				// Only the names -dns and -ip vouch for: the CSR's
				// kvm7-mgmt and 198.51.100.7 are left out.
				args:    []string{"-dns", "kvm7.example.org", "-ip", "198.51.100.8"},
				wantCN:  "kvm7.example.org",
				wantDNS: []string{"kvm7.example.org"},
				wantIPs: []string{"198.51.100.8"},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				certFile := filepath.Join(tmp, "csr-"+tt.name+".crt")
				mustRun(t, append([]string{"issue", "-dir", dir, "-csr", tt.csr, "-role", tt.role, "-out", certFile}, tt.args...)...)
				c := readCert(t, certFile)
				certs = append(certs, issued{"csr " + tt.name, c, tt.role})
				checkLeaf(t, c, tt.role)
				csr := parseCSRFile(t, tt.csr)
				assert.True(t, samePublicKey(csr.PublicKey, c.PublicKey), "the certificate carries the CSR's key")
				assert.Equal(t, "CN="+tt.wantCN, c.Subject.String())
				assert.ElementsMatch(t, tt.wantDNS, c.DNSNames)
				assert.ElementsMatch(t, tt.wantIPs, ipStrings(c.IPAddresses))
			})
		}
	})

	// Refused requests must not leave a certificate in the CA's records:
	// list, below, checks that it shows the certificates issued above and
	// no others.
	t.Run("issue refusals", func(t *testing.T) {
		existing := writeFile(t, "existing.key", []byte("do not replace me\n"))
		out := filepath.Join(tmp, "refused.crt")
		host := []string{"-role", "host", "-dns", "x.example.org", "-key-type", "ecdsa"}
		tests := []struct {
			name    string
			args    []string
			wantErr string
			usage   bool
			noFiles []string // files the refusal must not leave behind
		}{
			{
				name:    "key-out exists",
				args:    append([]string{"-key-out", existing, "-out", out}, host...),
				wantErr: "file exists",
				noFiles: []string{out},
			},
			{
				name:    "out in missing directory",
				args:    append([]string{"-key-out", filepath.Join(tmp, "new.key"), "-out", filepath.Join(tmp, "nodir", "x.crt")}, host...),
				wantErr: "no such file or directory",
				noFiles: []string{filepath.Join(tmp, "new.key")},
			},
			{
				name:    "out same as key-out",
				args:    append([]string{"-key-out", filepath.Join(tmp, "same.pem"), "-out", filepath.Join(tmp, "same.pem")}, host...),
				wantErr: "-out and -key-out name the same file",
				usage:   true,
				noFiles: []string{filepath.Join(tmp, "same.pem")},
			},
			{
				name:    "validity beyond the maximum",
				args:    append([]string{"-key-out", filepath.Join(tmp, "long.key"), "-out", out, "-validity-days", "2000"}, host...),
				wantErr: "exceeds the maximum",
				noFiles: []string{filepath.Join(tmp, "long.key"), out},
			},
			{
				name:    "no names",
				args:    []string{"-key-out", filepath.Join(tmp, "nameless.key"), "-out", out, "-role", "client", "-key-type", "ecdsa"},
				wantErr: "no common name, DNS name or IP address",
				noFiles: []string{filepath.Join(tmp, "nameless.key"), out},
			},
			{
				name:    "missing CSR file",
				args:    []string{"-csr", filepath.Join(tmp, "nope.csr"), "-role", "host", "-out", out},
				wantErr: "no such file or directory",
				noFiles: []string{out},
			},
			{
				name:    "garbage CSR",
				args:    []string{"-csr", writeFile(t, "garbage.csr", []byte("not a CSR")), "-role", "host", "-out", out},
				wantErr: "csr",
				noFiles: []string{out},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := runCLI(t, pwEnv, append([]string{"issue", "-dir", dir}, tt.args...)...)
				require.Error(t, r.err)
				assert.ErrorContains(t, r.err, tt.wantErr)
				assert.Equal(t, tt.usage, isUsage(r.err), "usage error")
				assert.Empty(t, r.stdout)
				for _, f := range tt.noFiles {
					assert.NoFileExists(t, f, "a refused issue leaves no file behind")
				}
			})
		}
		data, err := os.ReadFile(existing)
		require.NoError(t, err)
		assert.Equal(t, "do not replace me\n", string(data), "-key-out must not overwrite")
	})
	require.Len(t, certs, 7, "issue steps failed; the rest is moot")

	t.Run("bundle verifies every certificate", func(t *testing.T) {
		pemAgain, _ := bundle(t, dir)
		assert.Equal(t, pemBundle, pemAgain, "the bundle is stable")
		pool := x509.NewCertPool()
		require.True(t, pool.AppendCertsFromPEM(pemAgain))
		for _, c := range certs {
			_, err := c.cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			assert.NoError(t, err, c.name)
		}
		_, err := certs[0].cert.Verify(x509.VerifyOptions{Roots: x509.NewCertPool()})
		assert.Error(t, err, "sanity check: an empty pool verifies nothing")
	})

	t.Run("list", func(t *testing.T) {
		entries := list(t, dir)
		assert.Len(t, entries, len(certs), "one line per certificate, no more")
		for _, c := range certs {
			e, ok := entries[hexOf(c.cert.SerialNumber)]
			if !assert.True(t, ok, "%s (serial %x) is not listed", c.name, c.cert.SerialNumber) {
				continue
			}
			assert.Equal(t, "valid", e.status, c.name)
			assert.True(t, c.cert.NotAfter.Equal(e.notAfter), "%s: not-after %v, want %v", c.name, e.notAfter, c.cert.NotAfter)
			assert.Equal(t, c.cert.Subject.String(), e.subject, c.name)
		}
	})

	revoked := certs[0].cert
	revokedHex := hexOf(revoked.SerialNumber)
	var crlNumbers []*big.Int

	// crl signs a CRL and checks what every CRL of this CA must be.
	crl := func(t *testing.T, der bool) *x509.RevocationList {
		t.Helper()
		name := filepath.Join(t.TempDir(), "ca.crl")
		args := []string{"crl", "-dir", dir, "-out", name}
		if der {
			args = append(args, "-der")
		}
		out := mustRun(t, args...)
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		if der {
			assert.NotContains(t, string(data), "-----BEGIN", "-der writes DER")
		} else {
			b, rest := pem.Decode(data)
			require.NotNil(t, b, "a PEM CRL")
			require.Equal(t, "X509 CRL", b.Type)
			assert.Empty(t, rest)
			data = b.Bytes
		}
		l, err := x509.ParseRevocationList(data)
		require.NoError(t, err)
		require.NoError(t, l.CheckSignatureFrom(caCert), "the CRL is signed by the CA")
		assert.Equal(t, caCert.Subject.String(), l.Issuer.String())
		require.NotNil(t, l.Number)
		if n := len(crlNumbers); n > 0 {
			assert.Positive(t, l.Number.Cmp(crlNumbers[n-1]), "CRL number %v after %v", l.Number, crlNumbers[n-1])
		}
		crlNumbers = append(crlNumbers, l.Number)
		assert.True(t, l.NextUpdate.After(l.ThisUpdate))
		assert.Equal(t, fmt.Sprintf("CRL number %v with %d entries, next update %s\n", l.Number,
			len(l.RevokedCertificateEntries), l.NextUpdate.UTC().Format(time.RFC3339)), out)
		return l
	}

	t.Run("crl before revocation", func(t *testing.T) {
		l := crl(t, false)
		assert.Empty(t, l.RevokedCertificateEntries)
	})

	t.Run("revoke", func(t *testing.T) {
		out := mustRun(t, "revoke", "-dir", dir, "-serial", revokedHex, "-reason", "keyCompromise")
		assert.Equal(t, "revoked "+revokedHex+" (keyCompromise)\n", out)
	})

	t.Run("revoke errors", func(t *testing.T) {
		tests := []struct {
			name    string
			args    []string
			wantIs  error
			wantErr string
			usage   bool
		}{
			{"twice", []string{"-serial", revokedHex, "-reason", "superseded"}, provider.ErrAlreadyRevoked, revokedHex, false},
			{"twice, serial in OpenSSL form", []string{"-serial", "0x" + strings.ToUpper(revokedHex)}, provider.ErrAlreadyRevoked, revokedHex, false},
			{"unknown serial", []string{"-serial", "1234abcd", "-reason", "keyCompromise"}, provider.ErrNotFound, "1234abcd", false},
			{"unknown reason", []string{"-serial", hexOf(certs[1].cert.SerialNumber), "-reason", "stolen"}, nil, `unknown revocation reason "stolen"`, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := runCLI(t, pwEnv, append([]string{"revoke", "-dir", dir}, tt.args...)...)
				require.Error(t, r.err)
				if tt.wantIs != nil {
					assert.ErrorIs(t, r.err, tt.wantIs)
				}
				assert.ErrorContains(t, r.err, tt.wantErr)
				assert.Equal(t, tt.usage, isUsage(r.err), "usage error")
				assert.Empty(t, r.stdout)
			})
		}
	})

	t.Run("list after revoke", func(t *testing.T) {
		entries := list(t, dir)
		assert.Len(t, entries, len(certs))
		for _, c := range certs {
			want := "valid"
			if c.cert == revoked {
				want = "revoked"
			}
			assert.Equal(t, want, entries[hexOf(c.cert.SerialNumber)].status, c.name)
		}
	})

	t.Run("crl PEM and DER", func(t *testing.T) {
		for _, der := range []bool{false, true} {
			l := crl(t, der)
			require.Len(t, l.RevokedCertificateEntries, 1, "der=%v", der)
			e := l.RevokedCertificateEntries[0]
			assert.Equal(t, 0, e.SerialNumber.Cmp(revoked.SerialNumber), "the revoked serial is in the CRL")
			assert.Equal(t, int(provider.ReasonKeyCompromise), e.ReasonCode)
		}
		assert.Len(t, crlNumbers, 3)
	})
}

// TestBinary builds the command and runs it as scripts do: as a process,
// with the password in the environment, judged by exit status, standard
// output and standard error. OpenSSL then checks the results.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not in PATH")
	}
	t.Parallel()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "kvmpki-ca")
	build := exec.CommandContext(t.Context(), goTool, "build", "-o", bin, ".")
	buildOut, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", buildOut)

	goodEnv := []string{PasswordEnv + "=" + testPassword}
	type proc struct {
		stdout, stderr string
		code           int
	}
	runBin := func(t *testing.T, env []string, args ...string) proc {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Env = env // nothing inherited: the password comes from env alone
		cmd.Dir = tmp
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		p := proc{stdout: stdout.String(), stderr: stderr.String()}
		if err != nil {
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "running %s", bin)
			p.code = ee.ExitCode()
		}
		assertNoSecrets(t, p.stdout, p.stderr)
		return p
	}
	ok := func(t *testing.T, args ...string) string {
		t.Helper()
		p := runBin(t, goodEnv, args...)
		require.Equal(t, 0, p.code, "kvmpki-ca %s: stderr: %s", strings.Join(args, " "), p.stderr)
		assert.Empty(t, p.stderr, "success writes nothing to stderr")
		return p.stdout
	}

	dir := filepath.Join(tmp, "ca")
	out := ok(t, "init", "-dir", dir, "-issuer-dn", "CN=ca.cloudstack.apache.org", "-validity-days", "365")
	assert.Contains(t, out, "created CA CN=ca.cloudstack.apache.org in "+dir)

	good, goodKey := filepath.Join(tmp, "good.crt"), filepath.Join(tmp, "good.key")
	out = ok(t, "issue", "-dir", dir, "-key-out", goodKey, "-key-type", "ecdsa", "-role", "host",
		"-dns", "kvm1.example.org", "-ip", "192.0.2.1", "-validity-days", "30", "-out", good)
	assert.Contains(t, out, "issued CN=kvm1.example.org serial ")
	readKeyFile(t, goodKey)
	bad, badKey := filepath.Join(tmp, "revoked.crt"), filepath.Join(tmp, "revoked.key")
	ok(t, "issue", "-dir", dir, "-key-out", badKey, "-key-type", "ecdsa", "-role", "host",
		"-dns", "kvm2.example.org", "-out", bad)
	goodCert, badCert := readCert(t, good), readCert(t, bad)

	out = ok(t, "revoke", "-dir", dir, "-serial", hexOf(badCert.SerialNumber), "-reason", "keyCompromise")
	assert.Equal(t, "revoked "+hexOf(badCert.SerialNumber)+" (keyCompromise)\n", out)
	crlFile := filepath.Join(tmp, "crl.pem")
	out = ok(t, "crl", "-dir", dir, "-out", crlFile)
	assert.Contains(t, out, "with 1 entries")

	listOut := ok(t, "list", "-dir", dir)
	lines := strings.Split(strings.TrimSuffix(listOut, "\n"), "\n")
	require.Len(t, lines, 2, "list: %q", listOut)
	assert.ElementsMatch(t, []string{
		hexOf(goodCert.SerialNumber) + " valid " + goodCert.NotAfter.UTC().Format(time.RFC3339) + " CN=kvm1.example.org",
		hexOf(badCert.SerialNumber) + " revoked " + badCert.NotAfter.UTC().Format(time.RFC3339) + " CN=kvm2.example.org",
	}, lines)

	bundleFile := filepath.Join(tmp, "bundle.pem")
	caPEM := ok(t, "bundle", "-dir", dir)
	require.NoError(t, os.WriteFile(bundleFile, []byte(caPEM), 0o644))

	t.Run("exit status and streams", func(t *testing.T) {
		tests := []struct {
			name       string
			env        []string
			args       []string
			wantCode   int
			wantStderr string
			wantStdout string
		}{
			{"success", goodEnv, []string{"list", "-dir", dir}, 0, "", hexOf(goodCert.SerialNumber)},
			{"help", nil, []string{"init", "-h"}, 0, "-validity-days", ""},
			{"no password in env", nil, []string{"list", "-dir", dir}, 1, "kvmpki-ca: no CA key password: set $" + PasswordEnv, ""},
			{"wrong password in env", []string{PasswordEnv + "=" + wrongPassword}, []string{"list", "-dir", dir}, 1, "kvmpki-ca: rootca: incorrect CA key password", ""},
			{"other variables ignored", []string{"CA_PASSWORD=" + testPassword, "PASSWORD=" + testPassword}, []string{"bundle", "-dir", dir}, 1, "no CA key password", ""},
			{"no CA", goodEnv, []string{"list", "-dir", filepath.Join(tmp, "empty")}, 1, "run 'kvmpki-ca init", ""},
			{"revoke twice", goodEnv, []string{"revoke", "-dir", dir, "-serial", hexOf(badCert.SerialNumber)}, 1, "already revoked", ""},
			{"init twice", goodEnv, []string{"init", "-dir", dir}, 1, "already holds a CA", ""},
			{"key-out exists", goodEnv, []string{"issue", "-dir", dir, "-key-out", goodKey, "-role", "host", "-dns", "kvm3.example.org", "-out", filepath.Join(tmp, "x.crt")}, 1, "file exists", ""},
			{"usage: no command", goodEnv, nil, 2, "usage: kvmpki-ca COMMAND", ""},
			{"usage: unknown command", goodEnv, []string{"sign", "-dir", dir}, 2, `kvmpki-ca: unknown command "sign"`, ""},
			{"usage: missing role", goodEnv, []string{"issue", "-dir", dir, "-key-out", filepath.Join(tmp, "y.key"), "-out", filepath.Join(tmp, "y.crt")}, 2, "kvmpki-ca: -role is required", ""},
			{"usage: unknown flag", goodEnv, []string{"list", "-dir", dir, "-password", testPassword}, 2, "flag provided but not defined: -password", ""},
			{"usage: unknown reason", goodEnv, []string{"revoke", "-dir", dir, "-serial", "1f", "-reason", "bogus"}, 2, "unknown revocation reason", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p := runBin(t, tt.env, tt.args...)
				assert.Equal(t, tt.wantCode, p.code, "exit status; stderr: %s", p.stderr)
				assert.Contains(t, p.stderr, tt.wantStderr)
				if tt.wantCode != 0 {
					assert.Empty(t, p.stdout, "errors go to stderr alone")
				} else {
					assert.Contains(t, p.stdout, tt.wantStdout)
				}
			})
		}
		assert.NoFileExists(t, filepath.Join(tmp, "x.crt"))
		assert.NoFileExists(t, filepath.Join(tmp, "y.key"))
	})

	t.Run("password file", func(t *testing.T) {
		pwFile := writeFile(t, "ca.pw", []byte(testPassword+"\n"))
		p := runBin(t, nil, "list", "-dir", dir, "-password-file", pwFile)
		assert.Equal(t, 0, p.code, p.stderr)
		assert.Equal(t, listOut, p.stdout)
	})

	t.Run("openssl", func(t *testing.T) {
		peers.Require(t, "openssl")
		caBytes, err := os.ReadFile(bundleFile)
		require.NoError(t, err)
		goodPEM, err := os.ReadFile(good)
		require.NoError(t, err)
		badPEM, err := os.ReadFile(bad)
		require.NoError(t, err)
		crlPEM, err := os.ReadFile(crlFile)
		require.NoError(t, err)

		assert.NoError(t, peers.OpenSSLVerify(t, peers.PKI{CACert: caBytes, Cert: goodPEM},
			peers.VerifyOptions{Purpose: peers.PurposeServer, Hostname: "kvm1.example.org", Strict: true}),
			"openssl verify -CAfile bundle.pem good.crt")
		assert.NoError(t, peers.OpenSSLVerify(t, peers.PKI{CACert: caBytes, Cert: goodPEM},
			peers.VerifyOptions{Purpose: peers.PurposeClient, Hostname: "192.0.2.1"}),
			"a host certificate is a client certificate too")
		assert.NoError(t, peers.OpenSSLVerify(t, peers.PKI{CACert: caBytes, Cert: goodPEM, CRL: crlPEM},
			peers.VerifyOptions{}), "the good certificate passes -crl_check")
		assert.NoError(t, peers.OpenSSLVerify(t, peers.PKI{CACert: caBytes, Cert: badPEM},
			peers.VerifyOptions{}), "sanity check: without the CRL the revoked certificate verifies")
		assert.ErrorContains(t, peers.OpenSSLVerify(t, peers.PKI{CACert: caBytes, Cert: badPEM, CRL: crlPEM},
			peers.VerifyOptions{}), "certificate revoked",
			"openssl verify -crl_check -CRLfile crl.pem -CAfile bundle.pem revoked.crt")
		assert.NoError(t, peers.OpenSSLVerifyCRL(t, caBytes, crlPEM), "openssl crl -verify")
	})
}
