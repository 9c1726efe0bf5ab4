package main

import (
	"context"
	"fmt"

	"github.com/kvmpki/kvmpki/internal/dburl"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore"
	mysqlstore "github.com/kvmpki/kvmpki/rootca/sqlstore/mysql"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/postgres"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// DBPasswordEnv is the environment variable that holds the password of the
// -db database, so that it need not be in the URL, where ps shows it to
// every user of the machine. PostgreSQL's own PGPASSWORD and ~/.pgpass
// work too.
const DBPasswordEnv = dburl.PasswordEnv

// location names where the CA lives, for messages: the -dir directory or
// the -db database, without its password.
func (c *command) location() string {
	if c.db == "" {
		return c.dir
	}
	return "the -db database"
}

// initHint is how to create the CA at c's location.
func (c *command) initHint() string {
	if c.db != "" {
		return "kvmpki-ca init -db URL"
	}
	return "kvmpki-ca init -dir " + c.dir
}

// openDB opens the store of the -db URL, with the password from
// $KVMPKI_DB_PASSWORD added when the URL has none.
func (c *command) openDB(ctx context.Context) (rootca.Store, error) {
	u, err := dburl.WithPassword(c.db, c.getenv(DBPasswordEnv))
	if err != nil {
		return nil, &usageError{err.Error()}
	}
	// The backends this command accepts; a program links only those.
	return sqlstore.OpenURL(ctx, u, sqlite.Backend(), postgres.Backend(), mysqlstore.Backend())
}

// warnPasswordInURL warns when the -db URL holds a password, which every
// user of the machine can read in the process list.
func (c *command) warnPasswordInURL() {
	if c.db != "" && dburl.HasPassword(c.db) {
		fmt.Fprintf(c.stderr, "kvmpki-ca: warning: the -db URL holds a password, which other users can see; use $%s\n", DBPasswordEnv)
	}
}
