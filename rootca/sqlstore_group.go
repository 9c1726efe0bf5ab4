package rootca

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// groupAdds commits concurrent AddCertificate calls on SQLite together:
// one transaction, so one fsync of the log, for all the calls waiting
// while the previous transaction committed. Each call still returns only
// once its row is committed.
//
// The first caller to find no transaction running becomes the leader: it
// commits the waiting calls in rounds until none is left, while the others
// wait for their outcome.
//
// A leader that finds fewer calls waiting than it committed last time
// waits up to groupCommitWait for the others, which are usually signing
// their certificate: a lone caller never waits, and a busy CA commits its
// callers in one batch instead of a single one and then the rest.
type groupAdds struct {
	mu      sync.Mutex
	waiting []*pendingAdd
	leading bool
	last    int           // size of the last batch
	arrived chan struct{} // a call arrived while the leader gathers
}

// groupCommitWait bounds how long a leader waits for more calls; it is
// well under the time of the commit (an fsync) it spares them.
const groupCommitWait = time.Millisecond

type pendingAdd struct {
	ctx  context.Context
	args []any
	done chan error // buffered: the leader never blocks on it
}

// add inserts one certificate row and returns once it is committed, or
// with the insert's error, having changed nothing.
func (g *groupAdds) add(ctx context.Context, s *SQLStore, args []any) error {
	p := &pendingAdd{ctx: ctx, args: args, done: make(chan error, 1)}
	g.mu.Lock()
	g.waiting = append(g.waiting, p)
	if g.arrived == nil {
		g.arrived = make(chan struct{}, 1)
	}
	if g.leading {
		select {
		case g.arrived <- struct{}{}:
		default:
		}
		g.mu.Unlock()
		// Not abandoned when ctx is done: the row may be committing,
		// and a failed call must change nothing. The wait is bounded by
		// SQLite's busy timeout.
		return <-p.done
	}
	g.leading = true
	for len(g.waiting) > 0 {
		g.gather()
		batch := g.waiting
		g.waiting = nil
		g.last = len(batch)
		g.mu.Unlock()
		s.commitAdds(batch)
		g.mu.Lock()
	}
	g.leading = false
	g.mu.Unlock()
	return <-p.done
}

// gather waits, with g.mu held, up to groupCommitWait for as many calls
// as the last batch had.
func (g *groupAdds) gather() {
	if len(g.waiting) >= g.last {
		return
	}
	timer := time.NewTimer(groupCommitWait)
	defer timer.Stop()
	for len(g.waiting) < g.last {
		g.mu.Unlock()
		select {
		case <-g.arrived:
			g.mu.Lock()
		case <-timer.C:
			g.mu.Lock()
			return
		}
	}
}

// commitAdds inserts the rows of batch in one transaction and tells each
// caller its outcome. A duplicate serial fails only its own insert: in
// SQLite a constraint violation undoes the statement, not the
// transaction. Any other failure sends the batch back to one transaction
// per row, so that each caller gets its own error.
func (s *SQLStore) commitAdds(batch []*pendingAdd) {
	var live []*pendingAdd
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.done <- err
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	if len(live) == 1 {
		p := live[0]
		_, err := s.insert.ExecContext(p.ctx, p.args...)
		p.done <- err
		return
	}
	// The batch outlives any one caller's context: it is bounded by the
	// busy timeout instead.
	ctx := context.WithoutCancel(live[0].ctx)
	results := make([]error, len(live))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, s.insert)
		defer stmt.Close()
		for i, p := range live {
			if _, err := stmt.ExecContext(ctx, p.args...); err != nil {
				if !s.d.isUniqueViolation(err) {
					return err
				}
				results[i] = err
			}
		}
		return nil
	})
	if err != nil {
		for _, p := range live {
			_, err := s.insert.ExecContext(p.ctx, p.args...)
			p.done <- err
		}
		return
	}
	for i, p := range live {
		p.done <- results[i]
	}
}
