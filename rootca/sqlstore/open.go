package rootca

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Pool settings of the server databases. A management server issues and
// revokes a handful of certificates at a time; a small pool is plenty, and
// recycling connections lets a restarted or failed-over server be picked
// up without a restart of the process.
const (
	serverMaxOpenConns    = 8
	serverMaxIdleConns    = 4
	serverConnMaxIdleTime = 2 * time.Minute
	serverConnMaxLifetime = 30 * time.Minute
)

// OpenPostgres opens an SQLStore on the PostgreSQL database named by
// connString, a libpq URL or keyword/value string such as
// "postgres://ca@db.example.org/kvmpki?sslmode=verify-full", through
// github.com/jackc/pgx/v5. It creates or upgrades the schema, under an
// advisory lock so that several management servers may start at once.
//
// Every management server of a cluster opens the same database: the
// database then enforces a single CA, unique serials and increasing CRL
// numbers, and a revocation made by one server reaches the others' CAs
// through LISTEN/NOTIFY (see Options.RevocationPollInterval).
//
// Errors never include connString, which may hold a password.
func OpenPostgres(ctx context.Context, connString string) (*SQLStore, error) {
	if u, ok := strings.CutPrefix(connString, "postgres://"); ok || strings.HasPrefix(connString, "postgresql://") {
		if !ok {
			u = strings.TrimPrefix(connString, "postgresql://")
		}
		authority, _, _ := strings.Cut(u, "/")
		if strings.Count(authority, "@") > 1 {
			// Else the tail of the password is taken for the host, and
			// the host lookup's error would show it.
			return nil, errors.New("rootca: open postgresql store: malformed URL: more than one '@' before the host (write '@' in a password as %40)")
		}
	}
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		// pgx's parse errors redact the password.
		return nil, fmt.Errorf("rootca: open postgresql store: %w", err)
	}
	// The statements rely on READ COMMITTED, PostgreSQL's default, which
	// a database or role setting could change: under REPEATABLE READ
	// concurrent CRL numbers and revocations fail to serialize, and
	// concurrent first starts do not see each other's schema.
	cfg.RuntimeParams["default_transaction_isolation"] = "read committed"
	db := stdlib.OpenDB(*cfg)
	return openServer(ctx, db, &postgresDialect)
}

// OpenMySQL opens an SQLStore on the MariaDB or MySQL database named by
// dsn, in the form of github.com/go-sql-driver/mysql, such as
// "ca:password@tcp(db.example.org:3306)/kvmpki?tls=true". Tables are
// InnoDB; each session runs in strict SQL mode. It creates or upgrades the
// schema under a named lock, so that several management servers may start
// at once.
//
// Revocations made by other servers are learnt by polling (see
// Options.RevocationPollInterval).
//
// Errors never include dsn, which may hold a password.
func OpenMySQL(ctx context.Context, dsn string) (*SQLStore, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("rootca: open mariadb store: malformed DSN (user:password@tcp(host:port)/database): %w", redactedDSNError(err))
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	// Refuse, rather than truncate or coerce, a value that does not fit.
	cfg.Params["sql_mode"] = "'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION'"
	// The driver would log to the standard logger (stderr); rootca logs
	// only through the caller's slog.Logger, and the errors reach it.
	cfg.Logger = &mysql.NopLogger{}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("rootca: open mariadb store: %w", err)
	}
	return openServer(ctx, sql.OpenDB(connector), &mysqlDialect)
}

// redactedDSNError keeps the driver's explanation of a malformed DSN but
// not the DSN, should a driver version quote it.
func redactedDSNError(err error) error {
	msg := err.Error()
	if i := strings.IndexByte(msg, '@'); i >= 0 {
		return errors.New("DSN does not parse")
	}
	return err
}

// openServer sets the pool of a server database up, checks that the
// server answers, and migrates the schema.
func openServer(ctx context.Context, db *sql.DB, d *dialect) (*SQLStore, error) {
	db.SetMaxOpenConns(serverMaxOpenConns)
	db.SetMaxIdleConns(serverMaxIdleConns)
	db.SetConnMaxIdleTime(serverConnMaxIdleTime)
	db.SetConnMaxLifetime(serverConnMaxLifetime)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("rootca: open %s store: cannot reach the server: %w", d.name, err)
	}
	s, err := newSQLStore(ctx, db, d)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("rootca: open %s store: %w", d.name, err)
	}
	return s, nil
}

// OpenURL opens the SQLStore a URL names, as a -db flag gives it:
//
//	postgres://... or postgresql://...   PostgreSQL (OpenPostgres)
//	mysql://DSN or mariadb://DSN         MariaDB or MySQL (OpenMySQL), where DSN
//	                                     is user:password@tcp(host:port)/database
//	sqlite:PATH                          an SQLite file (OpenSQLite)
//
// Errors never include the URL.
func OpenURL(ctx context.Context, url string) (*SQLStore, error) {
	scheme, rest, ok := strings.Cut(url, ":")
	if !ok {
		return nil, errors.New("rootca: open store: database URL has no scheme (postgres://, mysql:// or sqlite:)")
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		return OpenPostgres(ctx, url)
	case "mysql", "mariadb":
		dsn, ok := strings.CutPrefix(rest, "//")
		if !ok {
			return nil, errors.New("rootca: open store: a MariaDB URL is mysql://user:password@tcp(host:port)/database")
		}
		return OpenMySQL(ctx, dsn)
	case "sqlite":
		return OpenSQLite(ctx, strings.TrimPrefix(rest, "//"))
	default:
		return nil, fmt.Errorf("rootca: open store: unknown database scheme %q (postgres://, mysql:// or sqlite:)", scheme)
	}
}
