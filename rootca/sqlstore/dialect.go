package rootca

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// A dialect holds everything that differs between the SQL databases
// SQLStore runs on, so that its statements (sqlstore.go) are written once.
// Statements are written with "?" placeholders and {type} markers in DDL;
// rebind and expand translate them.
//
// SQLStore's statements need neither an upsert nor row locks (SELECT ...
// FOR UPDATE): CreateAuthority relies on the primary key of a one-row
// table, Revoke on an UPDATE guarded by "status = valid" and its row count,
// and NextCRLNumber on an UPDATE that increments in place before the
// SELECT that reads the result, inside one transaction. Those are atomic
// under the default isolation of SQLite, PostgreSQL and MariaDB (InnoDB)
// alike.
type dialect struct {
	// name names the database in error messages, such as "sqlite".
	name string

	// placeholder returns the bind parameter for the n-th argument of a
	// statement, counting from 1, such as "$1" for PostgreSQL. If nil,
	// every argument is "?", as in SQLite and MariaDB.
	placeholder func(n int) string

	// Column types, substituted for {blob}, {text}, {key}, {time} and
	// {int} in DDL.
	//
	// blob holds arbitrary bytes (DER, the encrypted key); text holds
	// unbounded UTF-8 (subjects, JSON lists); key holds a lower-case
	// hexadecimal serial of at most 40 characters that is indexed and
	// must compare byte by byte (PostgreSQL: TEXT COLLATE "C"; MariaDB:
	// VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin); time holds the
	// 30-character fixed-width timestamps of timeLayout, with the same
	// byte-wise comparison; int is a signed 64-bit integer.
	blob, text, key, time, int string

	// partialIndexes is set where CREATE INDEX takes a WHERE clause
	// (SQLite, PostgreSQL): the DDL marker {where COND} becomes
	// " WHERE COND", and nothing elsewhere (MariaDB).
	partialIndexes bool

	// dropIndexOnTable is set where DROP INDEX names the table (MariaDB):
	// the DDL marker {on TABLE} becomes " ON TABLE", and nothing
	// elsewhere.
	dropIndexOnTable bool

	// tableSuffix, if set, follows the closing parenthesis of every
	// CREATE TABLE, such as "STRICT" for SQLite or "ENGINE=InnoDB" for
	// MariaDB.
	tableSuffix string

	// migrationLock, if set, is executed first in the migration
	// transaction, to serialize processes migrating at once where the
	// transaction alone does not: PostgreSQL's CREATE TABLE IF NOT EXISTS
	// races (pg_advisory_xact_lock). SQLite needs none: its write
	// transactions begin IMMEDIATE and so exclude each other.
	migrationLock string

	// nonTransactionalDDL is set for MariaDB, where every DDL statement
	// commits implicitly, so a migration cannot be one transaction.
	// There the migration runs on one connection holding the session
	// lock sessionLock (released by sessionUnlock), and tolerates the
	// objects a migration interrupted half-way left behind
	// (isAlreadyExists), so that it can be run again.
	nonTransactionalDDL        bool
	sessionLock, sessionUnlock string
	isAlreadyExists            func(err error) bool

	// groupCommit is set for SQLite, whose single writer commits one
	// transaction at a time, each with an fsync: concurrent
	// AddCertificate calls are then committed together (groupAdds).
	// Server databases commit concurrent transactions together by
	// themselves.
	groupCommit bool

	// notifyRevocation, if set, is executed in the transaction of every
	// revocation, to wake the stores waiting for one (PostgreSQL:
	// pg_notify, delivered at commit). Without it, CAs poll.
	notifyRevocation string

	// isUniqueViolation reports whether err, returned by the driver,
	// is a violation of a PRIMARY KEY or UNIQUE constraint
	// (PostgreSQL: SQLSTATE 23505; MariaDB: error 1062).
	isUniqueViolation func(err error) bool

	// isBusy, if set, reports whether err means the database was locked
	// by another process in a way its own wait did not cover, so that
	// opening may be retried.
	isBusy func(err error) bool

	// openError, if set, rewrites an error from opening the database or
	// migrating its schema into a clearer one, keeping it wrapped.
	openError func(err error) error
}

// rebind replaces the "?" placeholders of query with the dialect's. The
// statements of this package hold no "?" in literals or identifiers.
func (d *dialect) rebind(query string) string {
	if d.placeholder == nil {
		return query
	}
	var b strings.Builder
	n := 0
	for {
		i := strings.IndexByte(query, '?')
		if i < 0 {
			b.WriteString(query)
			return b.String()
		}
		n++
		b.WriteString(query[:i])
		b.WriteString(d.placeholder(n))
		query = query[i+1:]
	}
}

// expand replaces the {type} markers of a DDL statement with the dialect's
// column types, a trailing {table} marker with its table suffix, and the
// {where COND} and {on TABLE} markers as partialIndexes and
// dropIndexOnTable say.
func (d *dialect) expand(ddl string) string {
	ddl = ddlClause.ReplaceAllStringFunc(ddl, func(m string) string {
		kw, arg, _ := strings.Cut(m[1:len(m)-1], " ")
		if (kw == "where" && d.partialIndexes) || (kw == "on" && d.dropIndexOnTable) {
			return " " + strings.ToUpper(kw) + " " + arg
		}
		return ""
	})
	return strings.NewReplacer(
		"{blob}", d.blob,
		"{text}", d.text,
		"{key}", d.key,
		"{time}", d.time,
		"{int}", d.int,
		"{table}", d.tableSuffix,
	).Replace(ddl)
}

// ddlClause matches the {where COND} and {on TABLE} markers of DDL.
var ddlClause = regexp.MustCompile(`\{(where|on) [^}]+\}`)

// sqliteDialect is SQLite through modernc.org/sqlite, driver "sqlite".
var sqliteDialect = dialect{
	name: "sqlite",
	// SQLite compares TEXT with the BINARY collation (memcmp) unless told
	// otherwise, and STRICT tables refuse values of the wrong type.
	blob:           "BLOB",
	text:           "TEXT",
	key:            "TEXT",
	time:           "TEXT",
	int:            "INTEGER",
	tableSuffix:    "STRICT",
	groupCommit:    true,
	partialIndexes: true,
	isUniqueViolation: func(err error) bool {
		var e *sqlite.Error
		if !errors.As(err, &e) {
			return false
		}
		// The driver turns extended result codes on.
		return e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	},
	isBusy: func(err error) bool {
		var e *sqlite.Error
		if !errors.As(err, &e) {
			return false
		}
		code := e.Code() & 0xff
		return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
	},
	openError: func(err error) error {
		var e *sqlite.Error
		if errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_NOTADB {
			return fmt.Errorf("not an SQLite database: %w", err)
		}
		return err
	},
}

// sqliteDSN returns the modernc.org/sqlite data source name for the
// database file at the absolute path: a file: URI, so that no character of
// the path (a "?" in particular) is taken for a parameter, with the
// settings every connection needs.
//
//   - WAL journal: readers do not block the writer, and one fsync of the
//     log per commit.
//   - synchronous=FULL: in WAL mode, NORMAL may lose the last commits on
//     power loss; FULL syncs the log at every commit, so an issued or
//     revoked certificate is on disk when the call returns.
//   - busy_timeout: wait for other processes sharing the file instead of
//     failing with SQLITE_BUSY at once.
//   - foreign_keys: enforce the REFERENCES clauses of the schema.
//   - _txlock=immediate: every transaction SQLStore begins takes the write
//     lock at BEGIN, so two read-modify-write transactions (the CRL number,
//     migrations) serialize instead of failing with SQLITE_BUSY_SNAPSHOT
//     when one upgrades from reading to writing.
func sqliteDSN(path string) string {
	p := filepath.ToSlash(path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows path such as C:/ca/ca.db
	}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(sqliteBusyTimeout.Milliseconds(), 10))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "on")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: p, RawQuery: q.Encode()}
	return u.String()
}

// revocationChannel is the PostgreSQL notification channel of revocations.
const revocationChannel = "kvmpki_rootca_revocations"

// postgresDialect is PostgreSQL through github.com/jackc/pgx/v5/stdlib,
// driver "pgx".
var postgresDialect = dialect{
	name:        "postgresql",
	placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
	blob:        "BYTEA",
	text:        "TEXT",
	// The "C" collation compares bytes, whatever the database's locale.
	key:            `TEXT COLLATE "C"`,
	time:           `TEXT COLLATE "C"`,
	int:            "BIGINT",
	partialIndexes: true,
	// Two sessions running CREATE TABLE IF NOT EXISTS at once can both
	// try to create the table; the advisory lock, released at commit,
	// makes the second wait and then find the schema migrated. The key
	// is an arbitrary constant of this package ("kvmpki" in ASCII).
	migrationLock:    `SELECT pg_advisory_xact_lock(118, 1802333552)`,
	notifyRevocation: `SELECT pg_notify('` + revocationChannel + `', '')`,
	isUniqueViolation: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505"
	},
}

// mysqlDialect is MariaDB (or MySQL) through
// github.com/go-sql-driver/mysql, driver "mysql", with InnoDB tables.
var mysqlDialect = dialect{
	name: "mariadb",
	blob: "LONGBLOB",
	text: "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
	// Serials are at most 40 hexadecimal digits (160 bits); the binary
	// ASCII collation compares bytes.
	key:                 "VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin",
	time:                "CHAR(30) CHARACTER SET ascii COLLATE ascii_bin",
	int:                 "BIGINT",
	tableSuffix:         " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
	nonTransactionalDDL: true,
	dropIndexOnTable:    true,
	// A named lock of the session, so processes migrating at once take
	// turns; 60 seconds is far more than a migration takes.
	sessionLock:   `SELECT GET_LOCK('kvmpki_rootca_schema', 60)`,
	sessionUnlock: `SELECT RELEASE_LOCK('kvmpki_rootca_schema')`,
	isUniqueViolation: func(err error) bool {
		var e *mysql.MySQLError
		return errors.As(err, &e) && e.Number == 1062 // ER_DUP_ENTRY
	},
	isAlreadyExists: func(err error) bool {
		var e *mysql.MySQLError
		// ER_TABLE_EXISTS_ERROR, ER_DUP_KEYNAME, ER_DUP_FIELDNAME,
		// ER_DUP_ENTRY (a row a migration inserts),
		// ER_CANT_DROP_FIELD_OR_KEY (an index a migration dropped).
		return errors.As(err, &e) && (e.Number == 1050 || e.Number == 1061 || e.Number == 1060 || e.Number == 1062 || e.Number == 1091)
	},
}
