// Package postgres opens rootca's SQL store (package rootca/sqlstore) on a
// PostgreSQL database, through github.com/jackc/pgx/v5, for the
// management servers of a cluster, which share it. Only a program that
// imports this package links pgx.
//
// The database then enforces a single CA, unique serials and increasing
// CRL numbers, and a revocation made by one server reaches the others'
// CAs through LISTEN/NOTIFY (see rootca.Options.RevocationPollInterval).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/kvmpki/kvmpki/rootca/sqlstore"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/internal/redact"
)

// errMalformedURL is the whole message for a URL whose authority is
// ambiguous: it names no part of the URL.
var errMalformedURL = errors.New("rootca: open postgresql store: malformed URL: " +
	"an '@' after the host, or more than one (percent-encode '@', '/', '?' and '#' in a password: %40, %2F, %3F, %23)")

// Open opens a Store on the PostgreSQL database connString names, a
// libpq URL or keyword/value string such as
// "postgres://ca@db.example.org/kvmpki?sslmode=verify-full". It creates
// or upgrades the schema, under an advisory lock so that several
// management servers may start at once.
//
// A URL whose password holds '@', '/', '?' or '#' unencoded is refused
// before anything parses, resolves or echoes it: a URL parser takes the
// tail of such a password for the host. Errors never include connString
// or any part of its password.
func Open(ctx context.Context, connString string) (*sqlstore.Store, error) {
	password, err := checkURL(connString)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		// pgx's parse errors redact the password; make sure.
		if redact.Leaks(err.Error(), password) {
			return nil, errors.New("rootca: open postgresql store: malformed connection string")
		}
		return nil, fmt.Errorf("rootca: open postgresql store: %w", err)
	}
	// The statements rely on READ COMMITTED, PostgreSQL's default, which
	// a database or role setting could change: under REPEATABLE READ
	// concurrent CRL numbers and revocations fail to serialize, and
	// concurrent first starts do not see each other's schema.
	cfg.RuntimeParams["default_transaction_isolation"] = "read committed"
	s, err := sqlstore.New(ctx, stdlib.OpenDB(*cfg), Driver())
	if err != nil && redact.Leaks(err.Error(), cfg.Password) {
		return nil, errors.New("rootca: open postgresql store: failed (the error named the password, so it is not shown)")
	}
	return s, err
}

// checkURL checks the authority of a postgres:// or postgresql:// URL,
// and returns its password as written (empty for a keyword/value string).
// The authority must hold the URL's only '@': a second one, or one
// after the first '/', '?' or '#', means a password that holds one of
// those characters unencoded, whose tail a URL parser would take for the
// host and hand to the resolver.
func checkURL(connString string) (string, error) {
	lower := strings.ToLower(connString)
	var rest string
	switch {
	case strings.HasPrefix(lower, "postgres://"):
		rest = connString[len("postgres://"):]
	case strings.HasPrefix(lower, "postgresql://"):
		rest = connString[len("postgresql://"):]
	default:
		return "", nil // keyword/value: pgx parses and redacts it
	}
	at := strings.IndexByte(rest, '@')
	if at < 0 {
		return "", nil // no user information, so no password
	}
	if strings.Count(rest, "@") > 1 {
		return "", errMalformedURL
	}
	if end := strings.IndexAny(rest, "/?#"); end >= 0 && end < at {
		return "", errMalformedURL
	}
	_, password, _ := strings.Cut(rest[:at], ":")
	return password, nil
}

// Backend returns the backend of sqlstore.OpenURL for URLs "postgres://"
// and "postgresql://", opened with Open.
func Backend() sqlstore.Backend {
	return sqlstore.Backend{Schemes: []string{"postgres", "postgresql"}, Open: Open}
}

// Driver describes pgx's database/sql driver ("pgx", from
// github.com/jackc/pgx/v5/stdlib) to sqlstore.New, for a *sql.DB opened by
// the caller. Such a database must run at READ COMMITTED, PostgreSQL's
// default.
func Driver() *sqlstore.Driver {
	return &sqlstore.Driver{
		Flavor: sqlstore.PostgreSQL,
		IsUniqueViolation: func(err error) bool {
			var e *pgconn.PgError
			return errors.As(err, &e) && e.Code == "23505"
		},
		WaitNotification: func(ctx context.Context, dc any) error {
			c, ok := dc.(*stdlib.Conn)
			if !ok {
				return fmt.Errorf("unexpected driver connection %T", dc)
			}
			_, err := c.Conn().WaitForNotification(ctx)
			return err
		},
		IsClosed: func(dc any) bool {
			c, ok := dc.(*stdlib.Conn)
			return ok && c.Conn().IsClosed()
		},
	}
}
