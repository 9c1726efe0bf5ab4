package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"
)

// migrations are the schema changes of Store, in order: migrations[i]
// takes the schema from version i to version i+1. Append, never edit: a
// database records in schema_version which ones it has had. Statements
// are DDL with {type} markers (see dialect.expand), executed one by one,
// since not every driver runs several statements in one call.
var migrations = [][]string{
	// Version 1.
	{
		// The CA: one row, its key (NULL when the key is outside the
		// store) and its chain, issuing certificate first (seq 0).
		`CREATE TABLE authority (
			id          {int} NOT NULL PRIMARY KEY CHECK (id = 1),
			private_key {blob}
		){table}`,
		`CREATE TABLE authority_certificates (
			authority_id {int} NOT NULL REFERENCES authority (id),
			seq          {int} NOT NULL,
			der          {blob} NOT NULL,
			PRIMARY KEY (authority_id, seq)
		){table}`,
		// Issued certificates. status is provider.CertificateStatus
		// (0 valid, 1 revoked), role provider.Role, reason the RFC 5280
		// reason code; revoked_at and reason are NULL until revoked.
		`CREATE TABLE certificates (
			serial       {key} NOT NULL PRIMARY KEY,
			subject      {text} NOT NULL,
			dns_names    {text} NOT NULL,
			ip_addresses {text} NOT NULL,
			not_before   {time} NOT NULL,
			not_after    {time} NOT NULL,
			role         {int} NOT NULL,
			status       {int} NOT NULL CHECK (status IN (0, 1)),
			revoked_at   {time},
			reason       {int},
			der          {blob} NOT NULL,
			CHECK ((status = 0 AND revoked_at IS NULL AND reason IS NULL)
				OR (status = 1 AND revoked_at IS NOT NULL AND reason IS NOT NULL))
		){table}`,
		`CREATE INDEX certificates_not_after ON certificates (not_after)`,
		`CREATE INDEX certificates_status ON certificates (status)`,
		// The last CRL number handed out; 0 before the first CRL.
		`CREATE TABLE crl_number (
			id          {int} NOT NULL PRIMARY KEY CHECK (id = 1),
			last_number {int} NOT NULL
		){table}`,
		`INSERT INTO crl_number (id, last_number) VALUES (1, 0)`,
	},
	// Version 2: revocations numbered in commit order, so that the CAs
	// sharing a database learn of each other's revocations by asking for
	// those after the last number they saw (RevocationsSince). The
	// revocations made under version 1 all get number 1, and numbering
	// goes on from 2.
	{
		`ALTER TABLE certificates ADD COLUMN revocation_seq {int}`,
		`UPDATE certificates SET revocation_seq = 1 WHERE status = 1`,
		// Covering: a CA opening a store of a million certificates reads
		// its revocations from this index alone, not from the rows. It
		// also finds the revoked certificates for listings, so the
		// status index goes: every issuance updated it for nothing.
		// Partial where the database can: valid certificates, nearly
		// all of them, are not in it.
		`CREATE INDEX certificates_revocation_seq ON certificates
			(revocation_seq, serial, revoked_at, reason, not_after){where revocation_seq IS NOT NULL}`,
		`DROP INDEX certificates_status{on certificates}`,
		`CREATE TABLE revocation_counter (
			id       {int} NOT NULL PRIMARY KEY CHECK (id = 1),
			last_seq {int} NOT NULL
		){table}`,
		`INSERT INTO revocation_counter (id, last_seq) VALUES (1, 1)`,
	},
	// Version 3: CA rotation. The CA of the authority table is
	// generation 1; its successors are generations 2, 3... with their
	// own key and chain. retired_at is NULL while peers trust the
	// generation. authority_changes counts additions and retirements:
	// CAs sharing the database poll it to learn of a rotation, and its
	// row lock serialises them, so that of two servers beginning a
	// rotation at once one adds the generation and the other finds it.
	// Only new objects: a migration interrupted on MariaDB resumes by
	// passing over those it made.
	{
		`ALTER TABLE authority ADD COLUMN retired_at {time}`,
		`CREATE TABLE authority_generations (
			generation  {int} NOT NULL PRIMARY KEY CHECK (generation >= 2),
			private_key {blob},
			retired_at  {time}
		){table}`,
		`CREATE TABLE authority_generation_certificates (
			generation {int} NOT NULL REFERENCES authority_generations (generation),
			seq        {int} NOT NULL,
			der        {blob} NOT NULL,
			PRIMARY KEY (generation, seq)
		){table}`,
		`CREATE TABLE authority_changes (
			id          {int} NOT NULL PRIMARY KEY CHECK (id = 1),
			last_change {int} NOT NULL
		){table}`,
		`INSERT INTO authority_changes (id, last_change) VALUES (1, 0)`,
	},
	// Version 4: who drives a CA rotation. One row: the lease (holder
	// and lease_until, both NULL while free), which drivers claim by a
	// conditional UPDATE so that one works at a time across servers,
	// and push_pending, set by the holder while the push of the bundle
	// after a retirement is owed, so that the next driver finishes it.
	// A new table and its row only: a migration interrupted on MariaDB
	// resumes by passing over both.
	{
		`CREATE TABLE rotation_lease (
			id           {int} NOT NULL PRIMARY KEY CHECK (id = 1),
			holder       {text},
			lease_until  {time},
			push_pending {int} NOT NULL CHECK (push_pending IN (0, 1)),
			CHECK ((holder IS NULL AND lease_until IS NULL) OR (holder IS NOT NULL AND lease_until IS NOT NULL))
		){table}`,
		`INSERT INTO rotation_lease (id, holder, lease_until, push_pending) VALUES (1, NULL, NULL, 0)`,
	},
}

// schemaVersion is the version of the schema this package writes.
func schemaVersion() int { return len(migrations) }

// schemaVersionTable is created before any migration, to record them.
const schemaVersionTable = `CREATE TABLE IF NOT EXISTS schema_version (
	version    {int} NOT NULL PRIMARY KEY,
	applied_at {time} NOT NULL
){table}`

// execer is a *sql.Tx or *sql.Conn.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// migrate brings the schema up to schemaVersion. Run by several processes
// at once, one migrates and the others, which wait for its lock, then find
// nothing to do.
//
// Where DDL is transactional (SQLite, PostgreSQL) the whole migration is
// one transaction: it happens entirely or not at all. MariaDB commits
// every DDL statement on its own, so there the migration runs under a
// session lock, records each version as soon as it is complete, and a
// migration interrupted half-way is completed by the next run, which
// passes over the objects already there.
func (s *Store) migrate(ctx context.Context) error {
	return s.migrateTo(ctx, schemaVersion())
}

// migrateTo is migrate up to version target, which tests use to make
// databases of older versions.
func (s *Store) migrateTo(ctx context.Context, target int) error {
	if !s.d.nonTransactionalDDL {
		return s.inTx(ctx, func(tx *sql.Tx) error {
			if s.d.migrationLock != "" {
				if _, err := tx.ExecContext(ctx, s.d.migrationLock); err != nil {
					return fmt.Errorf("lock schema: %w", err)
				}
			}
			return s.migrateOn(ctx, tx, target)
		})
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var locked sql.NullInt64
	if err := conn.QueryRowContext(ctx, s.d.sessionLock).Scan(&locked); err != nil {
		return fmt.Errorf("lock schema: %w", err)
	}
	if locked.Int64 != 1 {
		return errors.New("lock schema: timed out waiting for another process migrating the schema")
	}
	defer func() {
		// A session lock outlives the statement; release it before the
		// connection goes back to the pool. If that fails, the lock
		// dies with the connection, which Raw then discards.
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), s.d.sessionUnlock); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return s.migrateOn(ctx, conn, target)
}

// migrateOn runs the migrations the schema lacks, up to version target,
// on e.
func (s *Store) migrateOn(ctx context.Context, e execer, target int) error {
	// Where DDL is not transactional, a migration interrupted half-way
	// is resumed by passing over what it created. That is only safe
	// when this store created the schema: a table of another application
	// that happens to share a name is an error, not ours to adopt.
	resuming := false
	if s.d.nonTransactionalDDL {
		var n int
		if err := e.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables
			WHERE table_schema = DATABASE() AND table_name = 'schema_version'`).Scan(&n); err != nil {
			return fmt.Errorf("look for schema_version: %w", err)
		}
		resuming = n > 0
	}
	if _, err := e.ExecContext(ctx, s.d.expand(schemaVersionTable)); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var current sql.NullInt64
	if err := e.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	v := int(current.Int64)
	if v > schemaVersion() {
		return fmt.Errorf("schema version %d is newer than version %d this build of rootca supports; upgrade the software", v, schemaVersion())
	}
	for ; v < target; v++ {
		for _, stmt := range migrations[v] {
			_, err := e.ExecContext(ctx, s.d.expand(stmt))
			if err != nil && resuming && s.d.isAlreadyExists(err) {
				continue // left by an interrupted run of this migration
			}
			if err != nil {
				return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
			}
		}
		if _, err := e.ExecContext(ctx, s.d.rebind(
			`INSERT INTO schema_version (version, applied_at) VALUES (?, ?)`),
			v+1, formatTime(time.Now())); err != nil {
			return fmt.Errorf("record schema version %d: %w", v+1, err)
		}
	}
	return nil
}
