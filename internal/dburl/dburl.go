// Package dburl holds the rules kvmpki's programs apply to a shared CA
// database's URL (postgres://USER@HOST/DB, mysql://USER@tcp(HOST:PORT)/DB):
// the password comes from the environment, never the command line, where
// every user of the machine can read it in the process list.
package dburl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// PasswordEnv is the environment variable that holds the database
// password, so that it need not be in the URL. PostgreSQL's own
// PGPASSWORD and ~/.pgpass work too.
const PasswordEnv = "KVMPKI_DB_PASSWORD"

// WithPassword returns the database URL with password set, unless
// password is empty or the URL has one already. Its errors never hold
// the password.
func WithPassword(dbURL, password string) (string, error) {
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
	return "", fmt.Errorf("-db: %s is set but the URL is neither postgres:// nor mysql://", PasswordEnv)
}

// HasPassword reports whether a database URL holds a password, which the
// caller should warn about.
func HasPassword(dbURL string) bool {
	scheme, rest, _ := strings.Cut(dbURL, "://")
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		if strings.Contains(strings.ToLower(dbURL), "password=") {
			return true
		}
		if u, err := url.Parse(dbURL); err == nil && u.User != nil {
			_, set := u.User.Password()
			return set
		}
	case "mysql", "mariadb":
		if cfg, err := mysql.ParseDSN(rest); err == nil {
			return cfg.Passwd != ""
		}
		// Unparsable: look before the '@', as a DSN USER:PASS@tcp(...).
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			return strings.Contains(rest[:at], ":")
		}
	}
	return false
}
