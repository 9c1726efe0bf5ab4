package main

import (
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOutputThroughSymlink plants a link to a victim file at each output
// path: issue -out and crl -out replace the link with their file (mode
// 0644) and leave the victim alone; issue -key-out refuses the existing
// link, as it refuses any existing file, and issues nothing.
func TestOutputThroughSymlink(t *testing.T) {
	t.Parallel()
	dir := fixtureCA(t, "CN=ca.example.org")
	tmp := t.TempDir()
	victimDir := t.TempDir()
	plant := func(t *testing.T, name string) (out, victim string) {
		t.Helper()
		victim = filepath.Join(victimDir, name)
		require.NoError(t, os.WriteFile(victim, []byte("victim\n"), 0o600))
		out = filepath.Join(tmp, name)
		require.NoError(t, os.Symlink(victim, out))
		return out, victim
	}
	assertVictim := func(t *testing.T, victim string) {
		t.Helper()
		got, err := os.ReadFile(victim)
		require.NoError(t, err)
		assert.Equal(t, "victim\n", string(got), "the link's target is untouched")
		fi, err := os.Stat(victim)
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
	}
	assertReplaced := func(t *testing.T, out, blockType string) {
		t.Helper()
		fi, err := os.Lstat(out)
		require.NoError(t, err)
		assert.True(t, fi.Mode().IsRegular(), "the link is replaced by a file")
		assert.Equal(t, fs.FileMode(0o644), fi.Mode().Perm())
		data, err := os.ReadFile(out)
		require.NoError(t, err)
		b, _ := pem.Decode(data)
		require.NotNil(t, b)
		assert.Equal(t, blockType, b.Type)
	}
	csr := writeFile(t, "h.csr", newCSR(t, "h.example.org", []string{"h.example.org"}, true))

	t.Run("issue -out", func(t *testing.T) {
		out, victim := plant(t, "issued.crt")
		mustRun(t, "issue", "-dir", dir, "-csr", csr, "-role", "host", "-dns", "h.example.org", "-out", out)
		assertVictim(t, victim)
		assertReplaced(t, out, "CERTIFICATE")
	})
	t.Run("crl -out", func(t *testing.T) {
		out, victim := plant(t, "ca.crl")
		mustRun(t, "crl", "-dir", dir, "-out", out)
		assertVictim(t, victim)
		assertReplaced(t, out, "X509 CRL")
	})
	t.Run("issue -key-out", func(t *testing.T) {
		key, victim := plant(t, "new.key")
		out := filepath.Join(tmp, "keyed.crt")
		before := list(t, dir)
		r := runCLI(t, pwEnv, "issue", "-dir", dir, "-key-out", key, "-role", "client", "-dns", "c.example.org", "-out", out)
		require.Error(t, r.err)
		assert.ErrorContains(t, r.err, "file exists")
		assertVictim(t, victim)
		assert.NoFileExists(t, out)
		assert.Equal(t, before, list(t, dir), "nothing issued")
	})
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotRegexp(t, `^\.`, e.Name(), "temporary file left")
	}
}
