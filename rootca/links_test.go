package rootca_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sqlDrivers are the module paths of the SQL drivers the backends of
// rootca/sqlstore use.
var sqlDrivers = []string{"github.com/jackc/pgx", "github.com/go-sql-driver/mysql", "modernc.org/sqlite"}

// TestLinkedDrivers is issue 11, item 11: a program linking rootca (with
// MemStore or a store of its own) links none of the SQL drivers, nor does
// the shared SQL store code; each backend links its own driver and no
// other.
func TestLinkedDrivers(t *testing.T) {
	const m = "github.com/kvmpki/kvmpki/"
	tests := []struct {
		pkg  string
		want string // the one driver it links, or ""
	}{
		{pkg: "rootca"},
		{pkg: "rootca/storetest"},
		{pkg: "rootca/sqlstore"},
		{pkg: "rootca/sqlstore/sqlite", want: "modernc.org/sqlite"},
		{pkg: "rootca/sqlstore/postgres", want: "github.com/jackc/pgx"},
		{pkg: "rootca/sqlstore/mysql", want: "github.com/go-sql-driver/mysql"},
	}
	for _, tc := range tests {
		t.Run(tc.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", m+tc.pkg).Output()
			require.NoError(t, err)
			deps := strings.Fields(string(out))
			thirdParty := 0
			for _, d := range deps {
				if first, _, _ := strings.Cut(d, "/"); strings.Contains(first, ".") && !strings.HasPrefix(d, m) {
					thirdParty++
				}
			}
			t.Logf("%s links %d third-party packages", tc.pkg, thirdParty)
			for _, driver := range sqlDrivers {
				linked := false
				for _, d := range deps {
					if d == driver || strings.HasPrefix(d, driver+"/") {
						linked = true
						break
					}
				}
				if driver == tc.want {
					assert.True(t, linked, "%s does not link its driver %s", tc.pkg, driver)
				} else {
					assert.False(t, linked, "%s links %s", tc.pkg, driver)
				}
			}
		})
	}
}
