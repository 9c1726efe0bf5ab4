package rootca

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSQLiteSettings checks the settings of the store's connections, which
// the DSN carries: a typo there would go unnoticed by every other test.
func TestSQLiteSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	s, err := OpenSQLite(t.Context(), path)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })

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
			require.NoError(t, s.db.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got))
			assert.Equal(t, tc.want, got)
		})
	}

	// Transactions begin IMMEDIATE: an open one, before any statement,
	// already keeps other connections from writing.
	tx, err := s.db.BeginTx(t.Context(), nil)
	require.NoError(t, err)
	defer tx.Rollback()
	other, err := sql.Open("sqlite", path+"?_busy_timeout=0")
	require.NoError(t, err)
	defer other.Close()
	_, err = other.ExecContext(t.Context(), `UPDATE crl_number SET last_number = last_number + 1`)
	assert.ErrorContains(t, err, "SQLITE_BUSY")
}

func TestDialectRebind(t *testing.T) {
	d := dialect{placeholder: func(n int) string { return "$" + string(rune('0'+n)) }}
	assert.Equal(t, "SELECT a FROM t WHERE b = $1 AND c = $2", d.rebind("SELECT a FROM t WHERE b = ? AND c = ?"))
	assert.Equal(t, "SELECT 1", d.rebind("SELECT 1"))
	assert.Equal(t, "x = ?", sqliteDialect.rebind("x = ?"))
}

func TestTimeLayoutSorts(t *testing.T) {
	// Text order must be time order, nanoseconds included, for the
	// ORDER BY and ExpiringBefore comparisons made in SQL.
	var texts []string
	for _, v := range []string{"0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2030-01-01T00:00:00.45Z",
		"2030-01-01T00:00:00.5Z", "2030-01-01T00:00:01Z", "9999-12-31T23:59:59.999999999Z"} {
		tm, err := time.Parse(time.RFC3339Nano, v)
		require.NoError(t, err)
		text := formatTime(tm)
		assert.Len(t, text, len(timeLayout), v)
		back, err := parseTime(text)
		require.NoError(t, err)
		assert.True(t, tm.Equal(back), "round trip of %s", v)
		texts = append(texts, text)
	}
	assert.IsIncreasing(t, texts)
}

func TestDialectExpand(t *testing.T) {
	ddl := `CREATE INDEX i ON t (a {text}){where a IS NOT NULL}; DROP INDEX j{on t}; CREATE TABLE u (b {int}){table}`
	tests := []struct {
		d    *dialect
		want string
	}{
		{&sqliteDialect, `CREATE INDEX i ON t (a TEXT) WHERE a IS NOT NULL; DROP INDEX j; CREATE TABLE u (b INTEGER)STRICT`},
		{&postgresDialect, `CREATE INDEX i ON t (a TEXT) WHERE a IS NOT NULL; DROP INDEX j; CREATE TABLE u (b BIGINT)`},
		{&mysqlDialect, `CREATE INDEX i ON t (a LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin); DROP INDEX j ON t; CREATE TABLE u (b BIGINT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`},
	}
	for _, tc := range tests {
		t.Run(tc.d.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.d.expand(ddl))
		})
	}
}
