package sqlstore

import (
	"context"
	"regexp"
	"strconv"
	"strings"
)

// A dialect holds everything that differs between the SQL databases
// a Store runs on, so that its statements (store.go) are written once.
// Statements are written with "?" placeholders and {type} markers in DDL;
// rebind and expand translate them.
//
// The statements need neither an upsert nor row locks (SELECT ...
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

	// waitNotification and isClosed are Driver's, for the listener.
	waitNotification func(ctx context.Context, conn any) error
	isClosed         func(conn any) bool
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

// sqliteDialect is SQLite (rootca/sqlstore/sqlite).
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
}

// revocationChannel is the PostgreSQL notification channel of revocations.
const revocationChannel = "kvmpki_rootca_revocations"

// postgresDialect is PostgreSQL (rootca/sqlstore/postgres).
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
}

// mysqlDialect is MariaDB or MySQL (rootca/sqlstore/mysql), with InnoDB
// tables.
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
}
