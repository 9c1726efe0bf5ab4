package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/keystore"
)

// buildBinary builds the command under test into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "keystore-setup")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

type result struct {
	stdout, stderr string
	code           int
}

func runBinary(t *testing.T, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

func TestKeystoreSetupBinary(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	props := filepath.Join(t.TempDir(), "agent.properties")
	require.NoError(t, os.WriteFile(props, []byte("# agent\nhost=192.0.2.1\n"), 0o600))

	r := runBinary(t, bin, "-dir", dir, "-properties", props, "-dns", "kvm1.example.org,kvm1",
		"-ip", "192.0.2.10,2001:db8::10", "-key-type", "rsa", "-format", "jks", "-cn", "kvm1.example.org")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "JKS, alias cloud")
	assert.Contains(t, r.stderr, "stored a new passphrase in "+props)

	// The CSR goes to standard output and to DIR/cloud.csr.
	block, _ := pem.Decode([]byte(r.stdout))
	require.NotNil(t, block)
	assert.Equal(t, "CERTIFICATE REQUEST", block.Type)
	assert.Equal(t, r.stdout, string(mustRead(t, filepath.Join(dir, keystore.CSRFile))))
	req, err := x509.ParseCertificateRequest(block.Bytes)
	require.NoError(t, err)
	require.NoError(t, req.CheckSignature())
	assert.Equal(t, []string{"kvm1.example.org", "kvm1"}, req.DNSNames)
	require.Len(t, req.IPAddresses, 2)
	assert.Equal(t, x509.RSA, req.PublicKeyAlgorithm)

	// The passphrase is in the properties file and nowhere in the output.
	content := string(mustRead(t, props))
	m := regexp.MustCompile(`(?m)^keystore\.passphrase=(\S+)$`).FindStringSubmatch(content)
	require.Len(t, m, 2)
	assert.NotContains(t, r.stdout+r.stderr, m[1])
	assert.True(t, len(content) > len("# agent\nhost=192.0.2.1\n") && content[:23] == "# agent\nhost=192.0.2.1\n")

	ks, err := keystore.Load(t.Context(), filepath.Join(dir, keystore.KeystoreFile), []byte(m[1]))
	require.NoError(t, err)
	assert.Equal(t, keystore.FormatJKS, ks.Format())

	// A second run reuses the passphrase; the default format is PKCS #12.
	r = runBinary(t, bin, "-dir", dir, "-properties", props, "-ip", "192.0.2.10", "-cn", "kvm1.example.org")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "PKCS12")
	assert.Contains(t, r.stderr, "reused the passphrase")
	assert.Equal(t, content, string(mustRead(t, props)))
}

func TestKeystoreSetupUsage(t *testing.T) {
	bin := buildBinary(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no dir", []string{}, "-dir is required"},
		{"bad format", []string{"-dir", t.TempDir(), "-format", "jceks"}, `unknown format "jceks"`},
		{"bad key type", []string{"-dir", t.TempDir(), "-key-type", "dsa"}, `unknown key algorithm "dsa"`},
		{"bad ip", []string{"-dir", t.TempDir(), "-ip", "not-an-ip"}, `"not-an-ip" is not an IP address`},
		{"stray argument", []string{"-dir", t.TempDir(), "secret"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runBinary(t, bin, tc.args...)
			assert.Equal(t, 2, r.code)
			assert.Contains(t, r.stderr, tc.want)
		})
	}
	r := runBinary(t, bin, "-dir", t.TempDir(), "-key-type", "rsa", "-rsa-bits", "1024", "-ip", "192.0.2.1")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "unsupported key: RSA-1024")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
