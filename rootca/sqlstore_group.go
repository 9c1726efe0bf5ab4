package rootca

import (
	"context"
	"database/sql"
	"sync"
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
// The leader does not wait for more calls before it commits: a lone caller
// never waits for others, and under load the calls that arrive during one
// commit make the next batch. (Waiting up to a millisecond for as many
// calls as the last batch had measured no better.)
type groupAdds struct {
	mu      sync.Mutex
	waiting []*pendingAdd
	leading bool
}

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
	if g.leading {
		g.mu.Unlock()
		// Not abandoned when ctx is done: the row may be committing,
		// and a failed call must change nothing. The wait is bounded by
		// SQLite's busy timeout.
		return <-p.done
	}
	g.leading = true
	for len(g.waiting) > 0 {
		batch := g.waiting
		g.waiting = nil
		g.mu.Unlock()
		s.commitAdds(batch)
		g.mu.Lock()
	}
	g.leading = false
	g.mu.Unlock()
	return <-p.done
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
