package sqlstore_test

import (
	"context"
	"database/sql"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca/sqlstore"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/mysql"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/postgres"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// migrationDialects are the SQL dialects with how a test gets a database,
// opens it raw and opens a store on it.
var migrationDialects = []struct {
	name     string
	drv      *sqlstore.Driver
	database func(t *testing.T) string
	driver   string
	open     func(ctx context.Context, loc string) (*sqlstore.Store, error)
}{
	{"sqlite", sqlite.Driver(), func(t *testing.T) string { return filepath.Join(t.TempDir(), "ca.db") }, "sqlite", sqlite.Open},
	{"postgresql", postgres.Driver(), func(t *testing.T) string { return peers.PostgresDatabase(t) }, "pgx", postgres.Open},
	{"mariadb", mysql.Driver(), func(t *testing.T) string { return peers.MySQLDatabase(t) }, "mysql", mysql.Open},
}

// TestMigrateFromVersion1 upgrades a database that a version-1 store
// wrote, with a revocation made before revocations were numbered: the
// upgrade keeps it, a CA loading the store sees it, and revocations after
// the upgrade are numbered.
func TestMigrateFromVersion1(t *testing.T) {
	for _, md := range migrationDialects {
		t.Run(md.name, func(t *testing.T) {
			ctx := t.Context()
			loc := md.database(t)
			db, err := sql.Open(md.driver, loc)
			require.NoError(t, err)
			defer db.Close()
			require.NoError(t, sqlstore.MigrateTo(ctx, db, md.drv, 1))
			now := time.Now()
			for i, status := range []provider.CertificateStatus{provider.StatusValid, provider.StatusRevoked, provider.StatusValid} {
				var revokedAt, reason any
				if status == provider.StatusRevoked {
					revokedAt, reason = sqlstore.FormatTime(now), int64(provider.ReasonKeyCompromise)
				}
				_, err := db.ExecContext(ctx, sqlstore.Rebind(md.drv, `INSERT INTO certificates
					(serial, subject, dns_names, ip_addresses, not_before, not_after, role, status, revoked_at, reason, der)
					VALUES (?, 'CN=old', '[]', '[]', ?, ?, 1, ?, ?, ?, ?)`),
					provider.FormatSerial(big.NewInt(int64(0x100+i))), sqlstore.FormatTime(now), sqlstore.FormatTime(now.Add(time.Hour)),
					int64(status), revokedAt, reason, []byte{0x30})
				require.NoError(t, err)
			}
			if md.drv.Flavor == sqlstore.MariaDB {
				// A version-2 migration interrupted after its first
				// statement: MariaDB committed the ALTER TABLE alone.
				_, err := db.ExecContext(ctx, sqlstore.MigrationStatement(md.drv, 1, 0))
				require.NoError(t, err)
			}

			s, err := md.open(ctx, loc)
			require.NoError(t, err, "the store upgrades the version-1 database")
			defer s.Close()
			var version int
			require.NoError(t, db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&version))
			assert.Equal(t, sqlstore.SchemaVersion(), version)

			revs, cursor, err := s.RevocationsSince(ctx, 0)
			require.NoError(t, err)
			require.Len(t, revs, 1, "the revocation made under version 1")
			assert.Equal(t, int64(0x101), revs[0].Serial.Int64())
			assert.Equal(t, provider.ReasonKeyCompromise, revs[0].Reason)

			_, err = s.Revoke(ctx, big.NewInt(0x102), provider.ReasonSuperseded, now)
			require.NoError(t, err)
			revs, _, err = s.RevocationsSince(ctx, cursor)
			require.NoError(t, err)
			require.Len(t, revs, 1, "only the revocation after the cursor")
			assert.Equal(t, int64(0x102), revs[0].Serial.Int64())
		})
	}
}

// TestMigrateRefusesForeignTable opens a store on a MariaDB database that
// already holds another application's table named like one of ours: the
// store must refuse it, not adopt it as the leftover of an interrupted
// migration.
func TestMigrateRefusesForeignTable(t *testing.T) {
	loc := peers.MySQLDatabase(t)
	db, err := sql.Open("mysql", loc)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.ExecContext(t.Context(), `CREATE TABLE certificates (id INT PRIMARY KEY, owner TEXT)`)
	require.NoError(t, err)
	s, err := mysql.Open(t.Context(), loc)
	if err == nil {
		s.Close()
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificates")
	assert.Contains(t, err.Error(), "already exists")
}
