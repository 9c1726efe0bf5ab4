package sqlstore

import (
	"context"
	"errors"
	"fmt"
)

// A Flavor is an SQL database a Store knows the statements of.
type Flavor int

const (
	// SQLite: one file, one writer at a time, group commit of issuances.
	SQLite Flavor = iota + 1
	// PostgreSQL: a shared server; revocations are notified through
	// LISTEN/NOTIFY.
	PostgreSQL
	// MariaDB, or MySQL, with InnoDB tables: a shared server; revocations
	// are polled.
	MariaDB
)

func (f Flavor) String() string {
	switch f {
	case SQLite:
		return "sqlite"
	case PostgreSQL:
		return "postgresql"
	case MariaDB:
		return "mariadb"
	}
	return fmt.Sprintf("Flavor(%d)", int(f))
}

// A Driver is what a Store needs to know of the database/sql driver under
// it, beyond the SQL its Flavor speaks: how to read the driver's errors,
// and on PostgreSQL how to wait for a notification. The backend packages
// make one each (sqlite.Driver, postgres.Driver, mysql.Driver); a program
// needs one only to open a Store on a *sql.DB of its own with New.
type Driver struct {
	// Flavor is the database's SQL. It must be set.
	Flavor Flavor

	// IsUniqueViolation reports whether err, returned by the driver, is
	// a violation of a PRIMARY KEY or UNIQUE constraint. It must be set.
	IsUniqueViolation func(err error) bool

	// IsBusy reports whether err means the database was locked by
	// another process in a way its own wait did not cover, so that
	// opening may be retried. If nil, no error is.
	IsBusy func(err error) bool

	// IsAlreadyExists reports whether err means a table, index, column
	// or row a migration creates exists already. Required for MariaDB,
	// whose DDL is not transactional, so that a migration interrupted
	// half-way can be run again; unused otherwise.
	IsAlreadyExists func(err error) bool

	// OpenError, if set, rewrites an error from opening the database or
	// migrating its schema into a clearer one, keeping it wrapped.
	OpenError func(err error) error

	// WaitNotification blocks until a notification arrives on the
	// driver connection conn (the value sql.Conn.Raw passes), on which
	// the store has run LISTEN, or until ctx is done. Required for
	// PostgreSQL; unused otherwise.
	WaitNotification func(ctx context.Context, conn any) error

	// IsClosed reports whether the driver connection conn is closed.
	// If nil, a wait cut short by ctx drops its connection.
	IsClosed func(conn any) bool
}

// dialect returns the dialect of d's flavor with d's functions, or an
// error if d lacks one its flavor needs.
func (d *Driver) dialect() (*dialect, error) {
	if d == nil {
		return nil, errors.New("rootca: sqlstore: nil Driver")
	}
	var out dialect
	switch d.Flavor {
	case SQLite:
		out = sqliteDialect
	case PostgreSQL:
		out = postgresDialect
		if d.WaitNotification == nil {
			return nil, errors.New("rootca: sqlstore: a PostgreSQL Driver needs WaitNotification")
		}
	case MariaDB:
		out = mysqlDialect
		if d.IsAlreadyExists == nil {
			return nil, errors.New("rootca: sqlstore: a MariaDB Driver needs IsAlreadyExists")
		}
	default:
		return nil, fmt.Errorf("rootca: sqlstore: unknown %v", d.Flavor)
	}
	if d.IsUniqueViolation == nil {
		return nil, errors.New("rootca: sqlstore: Driver.IsUniqueViolation is nil")
	}
	out.isUniqueViolation = d.IsUniqueViolation
	out.isBusy = d.IsBusy
	out.isAlreadyExists = d.IsAlreadyExists
	out.openError = d.OpenError
	out.waitNotification = d.WaitNotification
	out.isClosed = d.IsClosed
	return &out, nil
}
