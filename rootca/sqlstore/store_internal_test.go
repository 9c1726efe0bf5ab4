package sqlstore

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
