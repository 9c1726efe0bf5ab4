// Package sqlite opens rootca's SQL store (package rootca/sqlstore) on an
// SQLite database file, through modernc.org/sqlite (pure Go, no cgo), for
// a single management server. Only a program that imports this package
// links the SQLite driver.
//
// The database is in WAL mode with synchronous=FULL, so that a change is
// on disk when the call making it returns, and connections wait up to 10
// seconds for a lock held by another process. Concurrent issuances are
// committed together, one fsync for all.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/kvmpki/kvmpki/rootca/sqlstore"
)

// busyTimeout is how long a connection waits for a lock held by another
// connection or process before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// dirFileName is the database OpenDir keeps in its directory.
const dirFileName = "ca.db"

// Open opens, or creates, the SQLite database at path and returns a Store
// on it. A new file is created with mode 0600; the mode of an existing
// file is left alone. The directory must exist. Open creates the schema or
// upgrades it, and refuses a database whose schema is newer than this
// package knows or a file that is not an SQLite database.
func Open(ctx context.Context, path string) (*sqlstore.Store, error) {
	if path == "" {
		return nil, errors.New("rootca: open sqlite store: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("rootca: open sqlite store: %w", err)
	}
	if err := createPrivateFile(abs); err != nil {
		return nil, fmt.Errorf("rootca: open sqlite store: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("rootca: open sqlite store %s: %w", abs, err)
	}
	s, err := sqlstore.New(ctx, db, Driver())
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, abs)
	}
	return s, nil
}

// OpenDir opens, or creates, the SQLite database ca.db in dir, creating
// dir with mode 0700 if it does not exist: the layout of a CA kept in a
// directory of its own.
func OpenDir(ctx context.Context, dir string) (*sqlstore.Store, error) {
	if dir == "" {
		return nil, errors.New("rootca: open sqlite store: empty directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("rootca: open sqlite store: %w", err)
	}
	return Open(ctx, filepath.Join(dir, dirFileName))
}

// Backend returns the backend of sqlstore.OpenURL for URLs "sqlite:PATH"
// (or "sqlite://PATH").
func Backend() sqlstore.Backend {
	return sqlstore.Backend{
		Schemes: []string{"sqlite"},
		Open: func(ctx context.Context, u string) (*sqlstore.Store, error) {
			_, rest, _ := strings.Cut(u, ":")
			return Open(ctx, strings.TrimPrefix(rest, "//"))
		},
	}
}

// Driver describes modernc.org/sqlite to sqlstore.New, for a *sql.DB
// opened by the caller (driver name "sqlite"). Such a database needs the
// settings Open gives it: WAL, synchronous=FULL, a busy timeout, foreign
// keys and transactions that begin IMMEDIATE.
func Driver() *sqlstore.Driver {
	return &sqlstore.Driver{
		Flavor: sqlstore.SQLite,
		IsUniqueViolation: func(err error) bool {
			var e *sqlite.Error
			if !errors.As(err, &e) {
				return false
			}
			// The driver turns extended result codes on.
			return e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
		},
		IsBusy: func(err error) bool {
			var e *sqlite.Error
			if !errors.As(err, &e) {
				return false
			}
			code := e.Code() & 0xff
			return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
		},
		OpenError: func(err error) error {
			var e *sqlite.Error
			if errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_NOTADB {
				return fmt.Errorf("not an SQLite database: %w", err)
			}
			return err
		},
	}
}

// dsn returns the modernc.org/sqlite data source name for the database
// file at the absolute path: a file: URI, so that no character of the
// path (a "?" in particular) is taken for a parameter, with the settings
// every connection needs.
//
//   - WAL journal: readers do not block the writer, and one fsync of the
//     log per commit.
//   - synchronous=FULL: in WAL mode, NORMAL may lose the last commits on
//     power loss; FULL syncs the log at every commit, so an issued or
//     revoked certificate is on disk when the call returns.
//   - busy_timeout: wait for other processes sharing the file instead of
//     failing with SQLITE_BUSY at once.
//   - foreign_keys: enforce the REFERENCES clauses of the schema.
//   - _txlock=immediate: every transaction the store begins takes the
//     write lock at BEGIN, so two read-modify-write transactions (the CRL
//     number, migrations) serialize instead of failing with
//     SQLITE_BUSY_SNAPSHOT when one upgrades from reading to writing.
func dsn(path string) string {
	p := filepath.ToSlash(path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows path such as C:/ca/ca.db
	}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(busyTimeout.Milliseconds(), 10))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "on")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: p, RawQuery: q.Encode()}
	return u.String()
}

// createPrivateFile creates an empty file at path with mode 0600 unless
// one exists, so that SQLite, which creates its -wal and -shm files with
// the permissions of the database, never makes them readable by others.
// A new file's directory entry is synced.
func createPrivateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	// Directories cannot be synced on every system (Windows); SQLite
	// syncs the file itself at the first commit.
	_ = dir.Sync()
	return nil
}
