package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"

	"github.com/kvmpki/kvmpki/rootca/internal/storecheck"
)

// WaitRevocation blocks until a revocation may have been committed to the
// database since the previous call, by this or another Store, or until
// ctx is done. On PostgreSQL it waits for the notification every
// revocation sends at its commit (LISTEN/NOTIFY), on a connection of its
// own; the first call only starts listening and returns at once, since
// revocations may have been committed before. On SQLite and MariaDB it
// returns an error wrapping errors.ErrUnsupported at once, and a CA polls
// instead.
//
// If the connection is lost, WaitRevocation returns the error and the next
// call listens on a new connection; a revocation committed in between is
// found by the caller's next RevocationsSince.
func (s *Store) WaitRevocation(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	db, d := s.db, s.d
	// Not held while waiting: Close must not wait for a notification.
	s.mu.RUnlock()
	if d.notifyRevocation == "" {
		return fmt.Errorf("rootca: wait for revocation on %s: %w", d.name, errors.ErrUnsupported)
	}
	return s.listener.wait(ctx, db, d)
}

// listener holds the connection on which an Store on PostgreSQL
// listens for revocations.
type listener struct {
	mu   sync.Mutex // held by the waiter
	conn *sql.Conn  // nil until the first wait, or after a failure

	stopOnce sync.Once
	stop     chan struct{} // closed by close
}

func (l *listener) init() { l.stop = make(chan struct{}) }

// close wakes the waiter and closes the connection.
func (l *listener) close() {
	if l.stop == nil {
		return // a zero Store
	}
	l.stopOnce.Do(func() { close(l.stop) })
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drop()
}

// drop closes the connection, discarding it rather than returning it to
// the pool, since it is listening or broken. l.mu is held.
func (l *listener) drop() {
	if l.conn == nil {
		return
	}
	_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = l.conn.Close()
	l.conn = nil
}

func (l *listener) wait(ctx context.Context, db *sql.DB, d *dialect) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.stop:
		return storecheck.ErrStoreClosed
	default:
	}
	if l.conn == nil {
		conn, err := db.Conn(ctx)
		if err != nil {
			return l.waitError(ctx, err, d)
		}
		if _, err := conn.ExecContext(ctx, `LISTEN `+revocationChannel); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			_ = conn.Close()
			return l.waitError(ctx, err, d)
		}
		l.conn = conn
		return nil
	}
	err := l.conn.Raw(func(dc any) error { return d.waitNotification(ctx, dc) })
	if err != nil {
		return l.waitError(ctx, err, d)
	}
	return nil
}

// waitError turns the error of a wait into the one to return, dropping
// the connection unless the wait merely ran out of time. l.mu is held.
func (l *listener) waitError(ctx context.Context, err error, d *dialect) error {
	select {
	case <-l.stop:
		l.drop()
		return storecheck.ErrStoreClosed
	default:
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if l.conn != nil {
			// A wait cut short by its deadline leaves the connection
			// usable, unless the driver closed it.
			closed := d.isClosed == nil
			if !closed {
				_ = l.conn.Raw(func(dc any) error {
					closed = d.isClosed(dc)
					return nil
				})
			}
			if closed {
				l.drop()
			}
		}
		return ctxErr
	}
	l.drop()
	return fmt.Errorf("rootca: wait for revocation: %w", err)
}
