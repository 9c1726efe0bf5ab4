package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/internal/storecheck"
)

// This file holds the lease on driving a CA rotation (schema version 4):
// the one row of rotation_lease.

var _ rootca.RotationLeaseStore = (*Store)(nil)

// ClaimRotation gives holder the lease until until, if it is free,
// holder's, or expired at now: one UPDATE whose condition is the
// compare, so that the database's row lock makes one of several claims
// win (PostgreSQL re-checks the condition on the row a concurrent
// UPDATE committed; InnoDB's UPDATE reads the latest row; SQLite has one
// writer).
func (s *Store) ClaimRotation(ctx context.Context, holder string, now, until time.Time) error {
	if err := storecheck.Claim(holder, now, until); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	// Done: holder's lease until until (a renewal that changed
	// nothing, which MariaDB counts as no row).
	done := func(l *rootca.RotationLease) bool { return l.Holder == holder && l.Until.Equal(until) }
	return s.leaseUpdate(ctx, "claim rotation", now, done,
		`UPDATE rotation_lease SET holder = ?, lease_until = ?
			WHERE id = 1 AND (holder IS NULL OR holder = ? OR lease_until <= ?)`,
		holder, formatTime(until), holder, formatTime(now))
}

// SetRotationPushPending sets push_pending under holder's lease
// unexpired at now.
func (s *Store) SetRotationPushPending(ctx context.Context, holder string, now time.Time, pending bool) error {
	if err := storecheck.Holder("set rotation push pending", holder); err != nil {
		return err
	}
	if err := storecheck.Time("lease", now); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	flag := 0
	if pending {
		flag = 1
	}
	// Done: holder's lease, unexpired at now, with push_pending as
	// asked. Not the lease alone: a renewal of holder's expired lease
	// between the UPDATE and the read shows holder's unexpired lease
	// although the UPDATE wrote nothing.
	done := func(l *rootca.RotationLease) bool {
		return l.Holder == holder && l.Until.After(now) && l.PushPending == pending
	}
	return s.leaseUpdate(ctx, "set rotation push pending", now, done,
		`UPDATE rotation_lease SET push_pending = ? WHERE id = 1 AND holder = ? AND lease_until > ?`,
		flag, holder, formatTime(now))
}

// leaseUpdateHook, if set (by tests), runs between a lease UPDATE that
// changed no row and the read that follows it.
var leaseUpdateHook func()

// leaseUpdate runs the guarded UPDATE query. When it changes no row, the
// row is read: MariaDB counts changed rows, not matched ones, so an
// UPDATE that matched holder's row and wrote the values it held counts
// none; when the row is as the UPDATE would have left it (done), that is
// success. Otherwise the row names who holds the lease unexpired at now,
// if anyone does.
func (s *Store) leaseUpdate(ctx context.Context, op string, now time.Time, done func(*rootca.RotationLease) bool, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, s.d.rebind(query), args...)
	if err != nil {
		return fmt.Errorf("rootca: %s: %w", op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("rootca: %s: %w", op, err)
	}
	if n == 1 {
		return nil
	}
	if leaseUpdateHook != nil {
		leaseUpdateHook()
	}
	l, err := s.readLease(ctx)
	if err != nil {
		return fmt.Errorf("rootca: %s: %w", op, err)
	}
	if done(l) {
		return nil
	}
	return storecheck.Busy(l.Holder, l.Until, now)
}

// ReleaseRotation frees the lease if holder holds it.
func (s *Store) ReleaseRotation(ctx context.Context, holder string) error {
	if err := storecheck.Holder("release rotation", holder); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if _, err := s.db.ExecContext(ctx, s.d.rebind(
		`UPDATE rotation_lease SET holder = NULL, lease_until = NULL WHERE id = 1 AND holder = ?`), holder); err != nil {
		return fmt.Errorf("rootca: release rotation: %w", err)
	}
	return nil
}

// RotationLease returns the lease row.
func (s *Store) RotationLease(ctx context.Context) (*rootca.RotationLease, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	l, err := s.readLease(ctx)
	if err != nil {
		return nil, fmt.Errorf("rootca: rotation lease: %w", err)
	}
	return l, nil
}

func (s *Store) readLease(ctx context.Context) (*rootca.RotationLease, error) {
	var (
		holder, until sql.NullString
		pending       int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT holder, lease_until, push_pending FROM rotation_lease WHERE id = 1`).Scan(&holder, &until, &pending)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errors.New("the rotation_lease row is missing")
	}
	if err != nil {
		return nil, err
	}
	l := &rootca.RotationLease{Holder: holder.String, PushPending: pending != 0}
	if until.Valid {
		if l.Until, err = parseTime(until.String); err != nil {
			return nil, fmt.Errorf("stored lease_until: %w", err)
		}
	}
	return l, nil
}
