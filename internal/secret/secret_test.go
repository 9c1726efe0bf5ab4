package secret_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/secret"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name, content, want, err string
	}{
		{name: "plain", content: "s3cret", want: "s3cret"},
		{name: "one newline dropped", content: "s3cret\n", want: "s3cret"},
		{name: "CRLF dropped", content: "s3cret\r\n", want: "s3cret"},
		{name: "only one line ending dropped", content: "s3cret\n\n", want: "s3cret\n"},
		{name: "inner spaces kept", content: " a b \n", want: " a b "},
		{name: "empty", content: "", err: "secret: empty"},
		{name: "only a newline", content: "\n", err: "secret: empty"},
		{name: "at the limit", content: strings.Repeat("x", secret.MaxSize), want: strings.Repeat("x", secret.MaxSize)},
		{name: "over the limit", content: strings.Repeat("x", secret.MaxSize+1), err: "more than 65536 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pw")
			require.NoError(t, os.WriteFile(path, []byte(tc.content), 0o600))
			for _, src := range []struct {
				path  string
				stdin *strings.Reader
			}{{path, nil}, {"-", strings.NewReader(tc.content)}} {
				var got []byte
				var err error
				if src.stdin != nil {
					got, err = secret.Read(src.path, src.stdin)
				} else {
					got, err = secret.Read(src.path, nil)
				}
				if tc.err != "" {
					require.Error(t, err)
					assert.Contains(t, err.Error(), tc.err)
					continue
				}
				require.NoError(t, err)
				assert.Equal(t, tc.want, string(got))
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := secret.Read(filepath.Join(t.TempDir(), "none"), nil)
		assert.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("stdin absent", func(t *testing.T) {
		_, err := secret.Read("-", nil)
		assert.Error(t, err)
	})
}

// FuzzRead: no input panics Read, and what it returns is the input less
// one line ending.
func FuzzRead(f *testing.F) {
	for _, s := range []string{"pw", "pw\n", "pw\r\n", "", "\n", "\r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := secret.Read("-", strings.NewReader(s))
		if err != nil {
			return
		}
		assert.True(t, strings.HasPrefix(s, string(got)))
		assert.LessOrEqual(t, len(s)-len(got), 2)
	})
}

func TestPassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(path, []byte("from-file\n"), 0o600))
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "KVMPKI_CA_PASSWORD" {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name, file, env, want, wantErr string
	}{
		{name: "file wins", file: path, env: "from-env", want: "from-file"},
		{name: "environment", env: "from-env", want: "from-env"},
		{name: "neither", wantErr: "no CA key password: set $KVMPKI_CA_PASSWORD or use -password-file"},
		{name: "empty file", file: empty, env: "from-env", wantErr: "password file: secret: empty"},
		{name: "missing file", file: filepath.Join(t.TempDir(), "none"), wantErr: "password file: secret: open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := secret.Password(tc.file, "KVMPKI_CA_PASSWORD", env(tc.env), "CA key")
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
		})
	}
}
