// Package sqlstore is a rootca.Store kept in an SQL database through
// database/sql: SQLite for a single management server, or PostgreSQL or
// MariaDB shared by every management server of a cluster, as CloudStack's
// root CA plugin shares its database.
//
// As with database/sql and its drivers, this package holds what every
// database shares (the statements, the schema and its migrations, the
// encoding of values), and each database has a backend package of its
// own, so that a program links only the driver of the database it opens:
//
//	rootca/sqlstore/sqlite     modernc.org/sqlite (pure Go)
//	rootca/sqlstore/postgres   github.com/jackc/pgx/v5
//	rootca/sqlstore/mysql      github.com/go-sql-driver/mysql (MariaDB or MySQL)
//
// Open a store with the backend's Open, or with OpenURL and the backends
// a program accepts:
//
//	store, err := postgres.Open(ctx, "postgres://ca@db.example.org/kvmpki?sslmode=verify-full")
//	store, err := sqlstore.OpenURL(ctx, *dbURL, sqlite.Backend(), postgres.Backend())
//
// Every change is committed, and so durable, when its method returns.
// Each store creates and upgrades its own schema, in version steps
// recorded in the database, under a lock, so several servers may start at
// once. The database enforces what a cluster must never break: one CA,
// unique serials (a primary key), strictly increasing CRL numbers (a
// counter row updated in the transaction that reads it). The CA key is
// stored only encrypted, or not at all with an external signer.
//
// The caller owns a Store: a rootca.CA uses it and never closes it. Close
// the CA, then the store.
package sqlstore
