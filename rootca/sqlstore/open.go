package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
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

// sqliteBusyTimeout is how long an SQLite connection waits for a lock held
// by another connection or process before failing with SQLITE_BUSY, and
// how long New retries a busy SQLite database.
const sqliteBusyTimeout = 10 * time.Second

// New returns a Store on db, whose driver drv describes. It creates the
// schema or upgrades it, under a lock so that several processes may start
// at once, and refuses a database whose schema is newer than this package
// knows.
//
// New takes db over: it sets db's pool up (one connection for SQLite,
// where writers of this process queue in database/sql rather than poll
// the file lock; a small recycled pool for a server), and closes db when
// it fails and when the Store is closed.
//
// Most programs open a Store through a backend package instead, which
// opens db with the settings the Store relies on (sqlite.Open,
// postgres.Open, mysql.Open).
func New(ctx context.Context, db *sql.DB, drv *Driver) (*Store, error) {
	d, err := drv.dialect()
	if err != nil {
		db.Close()
		return nil, err
	}
	if drv.Flavor == SQLite {
		db.SetMaxOpenConns(1)
		s, err := openRetryingBusy(ctx, db, d)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("rootca: open %s store: %w", d.name, err)
		}
		return s, nil
	}
	db.SetMaxOpenConns(serverMaxOpenConns)
	db.SetMaxIdleConns(serverMaxIdleConns)
	db.SetConnMaxIdleTime(serverConnMaxIdleTime)
	db.SetConnMaxLifetime(serverConnMaxLifetime)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("rootca: open %s store: cannot reach the server: %w", d.name, err)
	}
	s, err := newStore(ctx, db, d)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("rootca: open %s store: %w", d.name, err)
	}
	return s, nil
}

// A Backend opens Stores on one kind of database from URLs, for OpenURL.
// The backend packages make one each (sqlite.Backend, postgres.Backend,
// mysql.Backend), so that a program links only the drivers of the
// backends it passes to OpenURL.
type Backend struct {
	// Schemes are the URL schemes the backend opens, lower-case and
	// without the colon, such as "postgres".
	Schemes []string
	// Open opens a Store on the database url names; url's scheme is one
	// of Schemes. Its errors must not include url, which may hold a
	// password.
	Open func(ctx context.Context, url string) (*Store, error)
}

// OpenURL opens the Store a URL names, as a -db flag gives it, with the
// first of backends whose Schemes hold the URL's scheme:
//
//	sqlstore.OpenURL(ctx, url, sqlite.Backend(), postgres.Backend(), mysql.Backend())
//
// The backends of this module take:
//
//	sqlite:PATH                          an SQLite file (sqlite.Open)
//	postgres://... or postgresql://...   PostgreSQL (postgres.Open)
//	mysql://DSN or mariadb://DSN         MariaDB or MySQL (mysql.Open), where DSN
//	                                     is user:password@tcp(host:port)/database
//
// Errors never include the URL.
func OpenURL(ctx context.Context, url string, backends ...Backend) (*Store, error) {
	scheme, _, ok := strings.Cut(url, ":")
	if !ok || scheme == "" {
		return nil, fmt.Errorf("rootca: open store: database URL has no scheme (%s)", schemeList(backends))
	}
	scheme = strings.ToLower(scheme)
	for _, b := range backends {
		for _, s := range b.Schemes {
			if s == scheme {
				return b.Open(ctx, url)
			}
		}
	}
	if len(backends) == 0 {
		return nil, errors.New("rootca: open store: no database backends given")
	}
	return nil, fmt.Errorf("rootca: open store: unknown database scheme %q (%s)", scheme, schemeList(backends))
}

func schemeList(backends []Backend) string {
	var list []string
	for _, b := range backends {
		for _, s := range b.Schemes {
			list = append(list, s+":")
		}
	}
	if len(list) == 0 {
		return "no backends given"
	}
	return strings.Join(list, ", ")
}
