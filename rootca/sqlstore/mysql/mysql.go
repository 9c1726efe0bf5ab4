// Package mysql opens rootca's SQL store (package rootca/sqlstore) on a
// MariaDB or MySQL database, through github.com/go-sql-driver/mysql, for
// the management servers of a cluster, which share it. Only a program
// that imports this package links the MySQL driver.
//
// Tables are InnoDB; each session runs in strict SQL mode. Revocations
// made by other servers are learnt by polling (see
// rootca.Options.RevocationPollInterval).
package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/kvmpki/kvmpki/rootca/sqlstore"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/internal/redact"
)

// Open opens a Store on the MariaDB or MySQL database named by dsn, in
// the form of github.com/go-sql-driver/mysql, such as
// "ca:password@tcp(db.example.org:3306)/kvmpki?tls=true". It creates or
// upgrades the schema under a named lock, so that several management
// servers may start at once.
//
// Errors never include dsn or any part of its password.
func Open(ctx context.Context, dsn string) (*sqlstore.Store, error) {
	password := dsnPassword(dsn)
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		msg := "rootca: open mariadb store: malformed DSN (user:password@tcp(host:port)/database)"
		if redact.Leaks(err.Error(), password) {
			return nil, errors.New(msg)
		}
		return nil, fmt.Errorf("%s: %w", msg, err)
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	// Refuse, rather than truncate or coerce, a value that does not fit.
	cfg.Params["sql_mode"] = "'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION'"
	// The driver would log to the standard logger (stderr); rootca logs
	// only through the caller's slog.Logger, and the errors reach it.
	cfg.Logger = &gomysql.NopLogger{}
	connector, err := gomysql.NewConnector(cfg)
	if err != nil {
		if redact.Leaks(err.Error(), cfg.Passwd) {
			return nil, errors.New("rootca: open mariadb store: invalid settings")
		}
		return nil, fmt.Errorf("rootca: open mariadb store: %w", err)
	}
	s, err := sqlstore.New(ctx, sql.OpenDB(connector), Driver())
	if err != nil && redact.Leaks(err.Error(), cfg.Passwd) {
		return nil, errors.New("rootca: open mariadb store: failed (the error named the password, so it is not shown)")
	}
	return s, err
}

// dsnPassword returns the password of dsn as the driver splits it: the
// text between the first ':' and the last '@' before the last '/'.
func dsnPassword(dsn string) string {
	if i := strings.LastIndexByte(dsn, '/'); i >= 0 {
		dsn = dsn[:i]
	}
	at := strings.LastIndexByte(dsn, '@')
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(dsn[:at], ":")
	return pw
}

// Backend returns the backend of sqlstore.OpenURL for URLs "mysql://DSN"
// and "mariadb://DSN", where DSN is user:password@tcp(host:port)/database,
// opened with Open.
func Backend() sqlstore.Backend {
	return sqlstore.Backend{
		Schemes: []string{"mysql", "mariadb"},
		Open: func(ctx context.Context, u string) (*sqlstore.Store, error) {
			_, rest, _ := strings.Cut(u, ":")
			dsn, ok := strings.CutPrefix(rest, "//")
			if !ok {
				return nil, errors.New("rootca: open store: a MariaDB URL is mysql://user:password@tcp(host:port)/database")
			}
			return Open(ctx, dsn)
		},
	}
}

// Driver describes go-sql-driver/mysql ("mysql") to sqlstore.New, for a
// *sql.DB opened by the caller. Such a database should run in strict SQL
// mode, as Open sets it.
func Driver() *sqlstore.Driver {
	return &sqlstore.Driver{
		Flavor: sqlstore.MariaDB,
		IsUniqueViolation: func(err error) bool {
			var e *gomysql.MySQLError
			return errors.As(err, &e) && e.Number == 1062 // ER_DUP_ENTRY
		},
		IsAlreadyExists: func(err error) bool {
			var e *gomysql.MySQLError
			// ER_TABLE_EXISTS_ERROR, ER_DUP_KEYNAME, ER_DUP_FIELDNAME,
			// ER_DUP_ENTRY (a row a migration inserts),
			// ER_CANT_DROP_FIELD_OR_KEY (an index a migration dropped).
			return errors.As(err, &e) && (e.Number == 1050 || e.Number == 1061 || e.Number == 1060 || e.Number == 1062 || e.Number == 1091)
		},
	}
}
