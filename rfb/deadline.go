package rfb

import (
	"context"
	"net"
	"sync"
	"time"
)

// deadlines keeps the caller's read and write deadlines on a transport,
// so that a context can interrupt an operation by moving a deadline into
// the past and the caller's deadline is put back afterwards.
type deadlines struct {
	conn net.Conn

	mu          sync.Mutex
	read, write time.Time
}

// set records and applies the caller's deadline for reads, writes or
// both.
func (d *deadlines) set(read, write bool, t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if read {
		d.read = t
	}
	if write {
		d.write = t
	}
	switch {
	case read && write:
		return d.conn.SetDeadline(t)
	case read:
		return d.conn.SetReadDeadline(t)
	default:
		return d.conn.SetWriteDeadline(t)
	}
}

// notWatched is the stop function when there is no context to watch.
func notWatched() bool { return false }

// watch makes ctx interrupt the reads (or writes) in progress on the
// transport, by moving their deadline into the past when ctx is done.
// The returned function ends the watch, puts the caller's deadline back
// if ctx fired, and reports whether it did. A context that can never be
// done costs nothing.
func (d *deadlines) watch(ctx context.Context, write bool) (stop func() bool) {
	if ctx.Done() == nil {
		return notWatched
	}
	fired := make(chan struct{})
	stopFunc := context.AfterFunc(ctx, func() {
		defer close(fired)
		d.mu.Lock()
		defer d.mu.Unlock()
		if write {
			_ = d.conn.SetWriteDeadline(time.Unix(1, 0))
		} else {
			_ = d.conn.SetReadDeadline(time.Unix(1, 0))
		}
	})
	return func() bool {
		if stopFunc() {
			return false
		}
		<-fired
		d.mu.Lock()
		defer d.mu.Unlock()
		if write {
			_ = d.conn.SetWriteDeadline(d.write)
		} else {
			_ = d.conn.SetReadDeadline(d.read)
		}
		return true
	}
}
