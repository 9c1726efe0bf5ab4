package sqlstore_test

import (
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore"
)

// TestMigrateToRotation upgrades a version-2 database holding a CA to
// version 3 (CA rotation) and on: the CA becomes generation 1, untouched and
// trusted, a CA opens on the upgraded store, and a successor generation
// can be added and the first retired. On MariaDB the upgrade resumes a
// version-3 migration interrupted after its first statement (the ALTER
// TABLE that MariaDB committed alone).
func TestMigrateToRotation(t *testing.T) {
	for _, md := range migrationDialects {
		t.Run(md.name, func(t *testing.T) {
			ctx := t.Context()
			loc, db := databaseAt(t, md.name, 2)
			root, key, err := rootca.NewRoot(nil)
			require.NoError(t, err)
			_, err = db.ExecContext(ctx, sqlstore.Rebind(md.drv, `INSERT INTO authority (id, private_key) VALUES (1, NULL)`))
			require.NoError(t, err)
			_, err = db.ExecContext(ctx, sqlstore.Rebind(md.drv,
				`INSERT INTO authority_certificates (authority_id, seq, der) VALUES (1, 0, ?)`), root.Raw)
			require.NoError(t, err)
			if md.drv.Flavor == sqlstore.MariaDB {
				_, err := db.ExecContext(ctx, sqlstore.MigrationStatement(md.drv, 2, 0))
				require.NoError(t, err)
			}

			s, err := md.open(ctx, loc)
			require.NoError(t, err, "the store upgrades the version-2 database")
			defer s.Close()
			var version int
			require.NoError(t, db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&version))
			assert.Equal(t, sqlstore.SchemaVersion(), version)

			gens, err := s.Generations(ctx)
			require.NoError(t, err)
			require.Len(t, gens, 1)
			assert.Equal(t, 1, gens[0].Number)
			assert.Equal(t, [][]byte{root.Raw}, gens[0].Certificates)
			assert.True(t, gens[0].RetiredAt.IsZero())
			ca, err := rootca.Open(ctx, s, &rootca.Options{Signer: key, RevocationPollInterval: -1})
			require.NoError(t, err, "a CA opens on the upgraded store")
			assert.True(t, ca.Certificate().Equal(root))
			require.NoError(t, ca.Close())

			next := &rootca.Generation{Number: 2, Authority: rootca.Authority{Certificates: [][]byte{[]byte("\x30\x82successor")}}}
			require.NoError(t, s.AddGeneration(ctx, next))
			require.NoError(t, s.RetireGeneration(ctx, 1, time.Now()))
			gens, err = s.Generations(ctx)
			require.NoError(t, err)
			require.Len(t, gens, 2)
			assert.False(t, gens[0].RetiredAt.IsZero())
		})
	}
}

// TestMigrateToRotationLease upgrades a version-3 database in the middle
// of a rotation (generation 2 added, generation 1 trusted) to version 4
// (the rotation lease): the generations are untouched, the lease is free
// with no push pending, and it can be claimed, renewed only by its
// holder, and released. On MariaDB the upgrade resumes a version-4
// migration interrupted after both of its statements ran but before the
// version was recorded.
func TestMigrateToRotationLease(t *testing.T) {
	for _, md := range migrationDialects {
		t.Run(md.name, func(t *testing.T) {
			ctx := t.Context()
			loc, db := databaseAt(t, md.name, 3)
			root, _, err := rootca.NewRoot(nil)
			require.NoError(t, err)
			for _, q := range []string{
				`INSERT INTO authority (id, private_key) VALUES (1, NULL)`,
				`INSERT INTO authority_certificates (authority_id, seq, der) VALUES (1, 0, ?)`,
				`INSERT INTO authority_generations (generation, private_key) VALUES (2, NULL)`,
				`INSERT INTO authority_generation_certificates (generation, seq, der) VALUES (2, 0, ?)`,
			} {
				var args []any
				if strings.Contains(q, "?") {
					args = append(args, root.Raw)
				}
				_, err = db.ExecContext(ctx, sqlstore.Rebind(md.drv, q), args...)
				require.NoError(t, err, q)
			}
			if md.drv.Flavor == sqlstore.MariaDB {
				for i := range 2 {
					_, err := db.ExecContext(ctx, sqlstore.MigrationStatement(md.drv, 3, i))
					require.NoError(t, err)
				}
			}

			s, err := md.open(ctx, loc)
			require.NoError(t, err, "the store upgrades the version-3 database")
			defer s.Close()
			var version int
			require.NoError(t, db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&version))
			assert.Equal(t, 4, version)

			gens, err := s.Generations(ctx)
			require.NoError(t, err)
			require.Len(t, gens, 2, "the rotation in progress is kept")
			assert.True(t, gens[0].RetiredAt.IsZero())
			l, err := s.RotationLease(ctx)
			require.NoError(t, err)
			assert.Equal(t, rootca.RotationLease{}, *l, "the lease starts free, no push pending")

			now := time.Now()
			require.NoError(t, s.ClaimRotation(ctx, "server-a", now, now.Add(time.Minute)))
			assert.ErrorIs(t, s.ClaimRotation(ctx, "server-b", now, now.Add(time.Minute)), rootca.ErrRotationBusy)
			require.NoError(t, s.SetRotationPushPending(ctx, "server-a", now, true))
			require.NoError(t, s.ReleaseRotation(ctx, "server-a"))
			l, err = s.RotationLease(ctx)
			require.NoError(t, err)
			assert.Equal(t, rootca.RotationLease{PushPending: true}, *l)
		})
	}
}

// databaseAt returns a new database of the dialect named name, migrated
// to schema version, as an older build left it, and a raw connection to
// it that the test closes at its end.
func databaseAt(t *testing.T, name string, version int) (string, *sql.DB) {
	t.Helper()
	for _, md := range migrationDialects {
		if md.name != name {
			continue
		}
		loc := md.database(t)
		db, err := sql.Open(md.driver, loc)
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		require.NoError(t, sqlstore.MigrateTo(t.Context(), db, md.drv, version))
		return loc, db
	}
	require.FailNow(t, "no dialect "+name)
	return "", nil
}
