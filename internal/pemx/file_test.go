package pemx

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		size    int // -1: no file
		wantErr error
	}{
		{name: "at the bound", size: MaxFileSize},
		{name: "over the bound", size: MaxFileSize + 1, wantErr: ErrTooLarge},
		{name: "missing", size: -1, wantErr: os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if tc.size >= 0 {
				require.NoError(t, os.WriteFile(path, make([]byte, tc.size), 0o600))
			}
			b, err := ReadFile(path)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				assert.ErrorContains(t, err, path)
				return
			}
			require.NoError(t, err)
			assert.Len(t, b, tc.size)
		})
	}
}
