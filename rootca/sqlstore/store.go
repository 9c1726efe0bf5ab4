package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/internal/storecheck"
)

var (
	_ rootca.Store            = (*Store)(nil)
	_ rootca.RevocationWaiter = (*Store)(nil)
)

// BUG(sqlstore): SQLite in WAL mode needs memory shared between the
// processes using the database, so sqlite.Open's file must not be on a
// network file system.

// BUG(sqlstore): Upgrade every process sharing a database at once. A process
// of a version that knows only schema version 1 checks the version when it
// opens the store, so after another process migrated the database to
// version 2 it would still revoke without numbering the revocation, and
// the revocation would be missing from the CAs' in-memory sets and from
// CRLs.

// Store is a Store kept in an SQL database through database/sql. Every
// change is committed, and so durable, when its method returns. Several
// Stores, in one process or several, may share a database: the CRL
// number, serial uniqueness and the single CA are enforced by the
// database, not by the process.
//
// Open one with a backend package (sqlite.Open, postgres.Open, mysql.Open),
// OpenURL, or New on a *sql.DB of your own. The
// zero value is a closed store: every method returns rootca.ErrStoreClosed.
//
// The schema is created and versioned by the store itself, in the table
// schema_version. Serials are stored as lower-case hexadecimal text
// (provider.FormatSerial), times as UTC text of fixed width with
// nanoseconds ("2006-01-02T15:04:05.000000000Z"), DNS names and IP
// addresses as JSON lists of strings, and certificates as DER.
type Store struct {
	// mu is held for reading by every call and for writing by Close, so
	// that Close waits for calls in progress and later calls see closed.
	mu     sync.RWMutex
	closed bool
	db     *sql.DB
	d      *dialect

	listener listener  // PostgreSQL's LISTEN connection, for WaitRevocation
	adds     groupAdds // SQLite's group commit of AddCertificate
	// insert is insertCertificate prepared once, where the dialect
	// commits in groups (SQLite, one connection): parsing the statement
	// costs as much as running it.
	insert *sql.Stmt
}

// openRetryingBusy runs newStore, retrying for up to sqliteBusyTimeout
// while another process holds the database in a way SQLite's busy handler
// does not wait for: when two processes open a new file at once, one of
// them may get SQLITE_BUSY from the switch to WAL mode at once, since
// waiting could deadlock.
func openRetryingBusy(ctx context.Context, db *sql.DB, d *dialect) (*Store, error) {
	deadline := time.Now().Add(sqliteBusyTimeout)
	backoff := 5 * time.Millisecond
	for {
		s, err := newStore(ctx, db, d)
		if err == nil || d.isBusy == nil || !d.isBusy(err) || time.Now().After(deadline) {
			return s, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (while waiting out: %v)", ctx.Err(), err)
		case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff)))):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// newStore migrates the schema of db and returns a store on it. On
// error the caller closes db.
func newStore(ctx context.Context, db *sql.DB, d *dialect) (*Store, error) {
	s := &Store{db: db, d: d}
	s.listener.init()
	if err := s.migrate(ctx); err != nil {
		if d.openError != nil {
			err = d.openError(err)
		}
		return nil, err
	}
	if d.groupCommit {
		stmt, err := db.PrepareContext(ctx, d.rebind(insertCertificate))
		if err != nil {
			return nil, err
		}
		s.insert = stmt
	}
	return s, nil
}

// enter takes the read lock and checks that the store is open. If it
// returns nil, the caller must call s.mu.RUnlock.
func (s *Store) enter() error {
	s.mu.RLock()
	if s.closed || s.db == nil {
		s.mu.RUnlock()
		return storecheck.ErrStoreClosed
	}
	return nil
}

// LoadAuthority returns the stored CA, its newest generation, or an error
// matching provider.ErrNotFound.
func (s *Store) LoadAuthority(ctx context.Context) (*rootca.Authority, error) {
	gens, err := s.Generations(ctx)
	if err != nil {
		if errors.Is(err, provider.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("rootca: load authority: %w", err)
	}
	return &gens[len(gens)-1].Authority, nil
}

// CreateAuthority stores a, unless the database already holds a CA, in
// which case it returns storecheck.ErrAuthorityExists. Of several stores racing to
// create the CA, exactly one succeeds.
func (s *Store) CreateAuthority(ctx context.Context, a *rootca.Authority) error {
	if err := storecheck.Authority(authorityCerts(a), a == nil); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	var key []byte
	if len(a.Key) > 0 {
		key = a.Key
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The CHECK (id = 1) primary key makes this the one row: the
		// loser of a race gets a unique violation, never a second CA.
		if _, err := tx.ExecContext(ctx, s.d.rebind(
			`INSERT INTO authority (id, private_key) VALUES (1, ?)`), key); err != nil {
			if s.d.isUniqueViolation(err) {
				return storecheck.ErrAuthorityExists
			}
			return err
		}
		for i, der := range a.Certificates {
			if _, err := tx.ExecContext(ctx, s.d.rebind(
				`INSERT INTO authority_certificates (authority_id, seq, der) VALUES (1, ?, ?)`), i, der); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, storecheck.ErrAuthorityExists) {
		return storecheck.ErrAuthorityExists
	}
	if err != nil {
		// Driver errors name constraints and tables, never bound values,
		// so the key cannot leak into the message.
		return fmt.Errorf("rootca: create authority: %w", err)
	}
	return nil
}

// AddCertificate records rec. A serial already recorded yields
// ErrDuplicateSerial, detected by the primary key of the certificates
// table, so that it holds across processes.
func (s *Store) AddCertificate(ctx context.Context, rec *provider.CertificateRecord) error {
	if err := storecheck.Record(rec); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	serial := provider.FormatSerial(rec.Serial)
	dns, err := encodeNames(rec.DNSNames)
	if err != nil {
		return fmt.Errorf("rootca: add certificate %s: %w", serial, err)
	}
	ips := make([]string, len(rec.IPAddresses))
	for i, ip := range rec.IPAddresses {
		ips[i] = ip.String()
	}
	ipText, err := encodeNames(ips)
	if err != nil {
		return fmt.Errorf("rootca: add certificate %s: %w", serial, err)
	}
	args := []any{serial, rec.Subject, dns, ipText, formatTime(rec.NotBefore), formatTime(rec.NotAfter),
		int64(rec.Role), int64(provider.StatusValid), rec.Raw}
	if s.d.groupCommit {
		err = s.adds.add(ctx, s, args)
	} else {
		_, err = s.db.ExecContext(ctx, s.d.rebind(insertCertificate), args...)
	}
	if err != nil {
		if s.d.isUniqueViolation(err) {
			return storecheck.DuplicateSerial(rec.Serial)
		}
		return fmt.Errorf("rootca: add certificate %s: %w", serial, err)
	}
	return nil
}

const insertCertificate = `INSERT INTO certificates
	(serial, subject, dns_names, ip_addresses, not_before, not_after, role, status, der)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`

// certificateColumns are the columns scanRecord reads, in its order.
const certificateColumns = `serial, subject, dns_names, ip_addresses, not_before, not_after,
	role, status, revoked_at, reason, der`

// Certificate returns the record for serial, or an error matching
// provider.ErrNotFound.
func (s *Store) Certificate(ctx context.Context, serial *big.Int) (*provider.CertificateRecord, error) {
	if err := storecheck.Serial(serial); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	row := s.db.QueryRowContext(ctx, s.d.rebind(
		`SELECT `+certificateColumns+` FROM certificates WHERE serial = ?`), provider.FormatSerial(serial))
	r, err := scanRecord(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, storecheck.NotFound(serial)
	}
	if err != nil {
		return nil, fmt.Errorf("rootca: certificate %s: %w", provider.FormatSerial(serial), err)
	}
	rec, err := r.decode()
	if err != nil {
		return nil, fmt.Errorf("rootca: certificate %s: %w", provider.FormatSerial(serial), err)
	}
	return rec, nil
}

// serialOrder orders lower-case hexadecimal serials without leading zeros
// numerically: a shorter one is smaller.
const serialOrder = `LENGTH(serial), serial`

// ListCertificates returns the records matching opts (nil means all) in
// increasing order of NotAfter, then serial.
func (s *Store) ListCertificates(ctx context.Context, opts *provider.ListOptions) ([]*provider.CertificateRecord, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var where []string
	var args []any
	if opts != nil && opts.Status != nil {
		// Revoked certificates are found through the revocation index;
		// valid ones, nearly all, by a scan.
		if *opts.Status == provider.StatusRevoked {
			where = append(where, `revocation_seq >= 1`)
		} else {
			where = append(where, `status = ?`)
			args = append(args, int64(*opts.Status))
		}
	}
	if opts != nil && !opts.ExpiringBefore.IsZero() {
		switch y := opts.ExpiringBefore.UTC().Year(); {
		case y < 0:
			return nil, nil // no stored NotAfter is that early
		case y <= 9999:
			where = append(where, `not_after < ?`)
			args = append(args, formatTime(opts.ExpiringBefore))
		}
		// After 9999 every stored NotAfter qualifies.
	}
	query := `SELECT ` + certificateColumns + ` FROM certificates`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY not_after, ` + serialOrder
	rows, err := s.db.QueryContext(ctx, s.d.rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("rootca: list certificates: %w", err)
	}
	defer rows.Close()
	var list []*provider.CertificateRecord
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("rootca: list certificates: %w", err)
		}
		rec, err := r.decode()
		if err != nil {
			return nil, fmt.Errorf("rootca: list certificates: certificate %s: %w", r.serial, err)
		}
		list = append(list, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rootca: list certificates: %w", err)
	}
	return list, nil
}

// Revoke marks the certificate with serial revoked for reason at the
// given time. Of several stores revoking the same certificate at once,
// exactly one succeeds; the others get provider.ErrAlreadyRevoked.
func (s *Store) Revoke(ctx context.Context, serial *big.Int, reason provider.RevocationReason, at time.Time) (*rootca.Revocation, error) {
	if err := storecheck.Revocation(serial, reason, at); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	hex := provider.FormatSerial(serial)
	var notAfter string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The counter's row lock, held to the commit, makes revocation
		// numbers follow commit order, so a reader that has seen number
		// n has seen every revocation numbered below it.
		if _, err := tx.ExecContext(ctx, s.d.rebind(
			`UPDATE revocation_counter SET last_seq = last_seq + 1 WHERE id = 1`)); err != nil {
			return err
		}
		var seq int64
		if err := tx.QueryRowContext(ctx, s.d.rebind(
			`SELECT last_seq FROM revocation_counter WHERE id = 1`)).Scan(&seq); err != nil {
			return err
		}
		// Guarded by the status, the UPDATE changes nothing when another
		// store revoked the certificate first, whatever the isolation.
		res, err := tx.ExecContext(ctx, s.d.rebind(`UPDATE certificates
			SET status = ?, reason = ?, revoked_at = ?, revocation_seq = ?
			WHERE serial = ? AND status = ?`),
			int64(provider.StatusRevoked), int64(reason), formatTime(at), seq, hex, int64(provider.StatusValid))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		var status int64
		err = tx.QueryRowContext(ctx, s.d.rebind(
			`SELECT status, not_after FROM certificates WHERE serial = ?`), hex).Scan(&status, &notAfter)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return storecheck.NotFound(serial)
		case err != nil:
			return err
		case n == 0:
			return storecheck.AlreadyRevoked(serial)
		}
		if s.d.notifyRevocation != "" {
			if _, err := tx.ExecContext(ctx, s.d.notifyRevocation); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, provider.ErrNotFound) || errors.Is(err, provider.ErrAlreadyRevoked) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("rootca: revoke %s: %w", hex, err)
	}
	na, err := parseTime(notAfter)
	if err != nil {
		// The revocation is committed; only the stored expiry is bad.
		return nil, fmt.Errorf("rootca: revoke %s: stored not_after: %w", hex, err)
	}
	return &rootca.Revocation{
		Serial:    new(big.Int).Set(serial),
		RevokedAt: at.UTC(),
		Reason:    reason,
		NotAfter:  na,
	}, nil
}

// Revocations returns every revocation, in increasing order of serial.
func (s *Store) Revocations(ctx context.Context) ([]rootca.Revocation, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	list, _, err := s.queryRevocations(ctx,
		`SELECT serial, revoked_at, reason, not_after, revocation_seq FROM certificates WHERE revocation_seq >= 1 ORDER BY `+serialOrder)
	if err != nil {
		return nil, fmt.Errorf("rootca: revocations: %w", err)
	}
	return list, nil
}

// RevocationsSince returns the revocations committed after cursor, in
// commit order, and the cursor to pass next time; cursor 0 asks for all.
// It reads an index, so a poll that finds nothing new costs two indexed
// lookups.
func (s *Store) RevocationsSince(ctx context.Context, cursor int64) ([]rootca.Revocation, int64, error) {
	if err := s.enter(); err != nil {
		return nil, 0, err
	}
	defer s.mu.RUnlock()
	// Read the counter first: a revocation committed after this read
	// has a higher number, so the next call returns it even if the
	// query below already did.
	var last int64
	if err := s.db.QueryRowContext(ctx, s.d.rebind(
		`SELECT last_seq FROM revocation_counter WHERE id = 1`)).Scan(&last); err != nil {
		return nil, 0, fmt.Errorf("rootca: revocations since %d: %w", cursor, err)
	}
	if cursor <= 0 || cursor > last {
		// All of them.
		// Every revocation has a number from 1 (schema version 2).
		list, maxSeq, err := s.queryRevocations(ctx,
			`SELECT serial, revoked_at, reason, not_after, revocation_seq FROM certificates WHERE revocation_seq >= 1`)
		if err != nil {
			return nil, 0, fmt.Errorf("rootca: revocations: %w", err)
		}
		// The query saw revocation maxSeq, so it saw every one numbered
		// below it too, which committed before it: resume after it.
		return list, max(last, maxSeq), nil
	}
	if cursor == last {
		return nil, last, nil
	}
	list, maxSeq, err := s.queryRevocations(ctx,
		`SELECT serial, revoked_at, reason, not_after, revocation_seq FROM certificates
			WHERE revocation_seq > ? ORDER BY revocation_seq`, cursor)
	if err != nil {
		return nil, 0, fmt.Errorf("rootca: revocations since %d: %w", cursor, err)
	}
	return list, max(maxSeq, cursor), nil
}

// queryRevocations runs a query of the columns serial, revoked_at,
// reason, not_after and revocation_seq, and returns the revocations with
// the highest number among them.
func (s *Store) queryRevocations(ctx context.Context, query string, args ...any) ([]rootca.Revocation, int64, error) {
	rows, err := s.db.QueryContext(ctx, s.d.rebind(query), args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var list []rootca.Revocation
	var maxSeq int64
	for rows.Next() {
		var hex, revokedAt, notAfter string
		var reason int64
		var seq sql.NullInt64
		if err := rows.Scan(&hex, &revokedAt, &reason, &notAfter, &seq); err != nil {
			return nil, 0, err
		}
		rev, err := decodeRevocation(hex, revokedAt, reason, notAfter)
		if err != nil {
			return nil, 0, fmt.Errorf("certificate %s: %w", hex, err)
		}
		list = append(list, rev)
		maxSeq = max(maxSeq, seq.Int64)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	return list, maxSeq, nil
}

// NextCRLNumber atomically increments the CRL number and returns the new
// value. The first call returns 1; values never repeat, also across
// processes sharing the database.
func (s *Store) NextCRLNumber(ctx context.Context) (*big.Int, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The UPDATE takes the write lock (SQLite) or the row lock
		// (PostgreSQL, MariaDB) before the SELECT reads the result.
		if _, err := tx.ExecContext(ctx, s.d.rebind(
			`UPDATE crl_number SET last_number = last_number + 1 WHERE id = 1`)); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, s.d.rebind(
			`SELECT last_number FROM crl_number WHERE id = 1`)).Scan(&n)
	})
	if err != nil {
		return nil, fmt.Errorf("rootca: next crl number: %w", err)
	}
	return big.NewInt(n), nil
}

// Close waits for the calls in progress, then closes the database. Later
// calls return storecheck.ErrStoreClosed. Closing a closed Store does nothing and
// returns nil.
func (s *Store) Close() error {
	s.listener.close() // wakes a WaitRevocation in progress
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.db == nil {
		return nil
	}
	s.closed = true
	if s.insert != nil {
		_ = s.insert.Close()
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("rootca: close store: %w", err)
	}
	return nil
}

// inTx runs f in a write transaction and commits it if f returns nil.
func (s *Store) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// authorityCerts returns a's chain, or nil for a nil a.
func authorityCerts(a *rootca.Authority) [][]byte {
	if a == nil {
		return nil
	}
	return a.Certificates
}
