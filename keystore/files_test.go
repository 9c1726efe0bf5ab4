package keystore

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWriteFilesReplacesLinks: a link planted where a keystore file goes
// is replaced by the file; its target, outside the directory, is not
// written.
func TestWriteFilesReplacesLinks(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("untouched"), 0o644))
	require.NoError(t, os.Symlink(victim, filepath.Join(dir, KeyFile)))
	require.NoError(t, writeFiles(osFS{}, dir, []fileWrite{
		{name: KeyFile, data: []byte("key"), mode: 0o600},
		{name: CertFile, data: []byte("cert"), mode: 0o644},
	}))
	got, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "untouched", string(got))
	fi, err := os.Lstat(filepath.Join(dir, KeyFile))
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular(), "the link was replaced")
	assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
	assertNoTempFiles(t, dir)
}
