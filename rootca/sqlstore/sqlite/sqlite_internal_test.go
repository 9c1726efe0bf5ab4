package sqlite

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSQLiteSettings checks the settings of the store's connections, which
// the DSN carries: a typo there would go unnoticed by every other test.
func TestSQLiteSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	// The store's own connection has the DSN's settings.
	db, err := sql.Open("sqlite", dsn(path))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)

	tests := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
		{"busy_timeout", "10000"},
	}
	for _, tc := range tests {
		t.Run(tc.pragma, func(t *testing.T) {
			var got string
			require.NoError(t, db.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got))
			assert.Equal(t, tc.want, got)
		})
	}

	// Transactions begin IMMEDIATE: an open one, before any statement,
	// already keeps other connections from writing.
	tx, err := db.BeginTx(t.Context(), nil)
	require.NoError(t, err)
	defer tx.Rollback()
	other, err := sql.Open("sqlite", path+"?_busy_timeout=0")
	require.NoError(t, err)
	defer other.Close()
	_, err = other.ExecContext(t.Context(), `UPDATE crl_number SET last_number = last_number + 1`)
	assert.ErrorContains(t, err, "SQLITE_BUSY")
}
