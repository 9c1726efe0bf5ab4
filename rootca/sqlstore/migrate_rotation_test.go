package sqlstore_test

import (
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore"
)

// TestMigrateToRotation upgrades a version-2 database holding a CA to
// version 3 (CA rotation): the CA becomes generation 1, untouched and
// trusted, a CA opens on the upgraded store, and a successor generation
// can be added and the first retired. On MariaDB the upgrade resumes a
// version-3 migration interrupted after its first statement (the ALTER
// TABLE that MariaDB committed alone).
func TestMigrateToRotation(t *testing.T) {
	for _, md := range migrationDialects {
		t.Run(md.name, func(t *testing.T) {
			ctx := t.Context()
			loc := md.database(t)
			db, err := sql.Open(md.driver, loc)
			require.NoError(t, err)
			defer db.Close()
			require.NoError(t, sqlstore.MigrateTo(ctx, db, md.drv, 2))
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
			assert.Equal(t, 3, version)

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
