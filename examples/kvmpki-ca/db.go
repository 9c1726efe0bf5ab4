package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"

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
const DBPasswordEnv = "KVMPKI_DB_PASSWORD"

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
	u, err := withDBPassword(c.db, c.getenv(DBPasswordEnv))
	if err != nil {
		return nil, &usageError{err.Error()}
	}
	// The backends this command accepts; a program links only those.
	return sqlstore.OpenURL(ctx, u, sqlite.Backend(), postgres.Backend(), mysqlstore.Backend())
}

// withDBPassword returns the database URL with password set, unless
// password is empty or the URL has one already.
func withDBPassword(dbURL, password string) (string, error) {
	if password == "" {
		return dbURL, nil
	}
	scheme, rest, _ := strings.Cut(dbURL, "://")
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		u, err := url.Parse(dbURL)
		if err != nil || u.User == nil {
			return "", errors.New("-db: a PostgreSQL URL with a user is postgres://USER@HOST/DATABASE")
		}
		if _, set := u.User.Password(); !set {
			u.User = url.UserPassword(u.User.Username(), password)
		}
		return u.String(), nil
	case "mysql", "mariadb":
		cfg, err := mysql.ParseDSN(rest)
		if err != nil {
			return "", errors.New("-db: a MariaDB URL is mysql://USER@tcp(HOST:PORT)/DATABASE")
		}
		if cfg.Passwd == "" {
			cfg.Passwd = password
		}
		return scheme + "://" + cfg.FormatDSN(), nil
	}
	return "", fmt.Errorf("-db: %s is set but the URL is neither postgres:// nor mysql://", DBPasswordEnv)
}

// warnPasswordInURL warns when the -db URL holds a password, which every
// user of the machine can read in the process list.
func (c *command) warnPasswordInURL() {
	if c.db == "" {
		return
	}
	scheme, rest, _ := strings.Cut(c.db, "://")
	hasPassword := false
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		if u, err := url.Parse(c.db); err == nil && u.User != nil {
			_, hasPassword = u.User.Password()
		}
		hasPassword = hasPassword || strings.Contains(c.db, "password=")
	case "mysql", "mariadb":
		if cfg, err := mysql.ParseDSN(rest); err == nil {
			hasPassword = cfg.Passwd != ""
		}
	}
	if hasPassword {
		fmt.Fprintf(c.stderr, "kvmpki-ca: warning: the -db URL holds a password, which other users can see; use $%s\n", DBPasswordEnv)
	}
}
