package sqlstore

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
// commits the waiting calls in one transaction while the others wait for
// their outcome, and passes the lead on (see add).
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

// pendingAdd is one AddCertificate call waiting in a groupAdds. It keeps
// the caller's context, against the usual rule, because the leader that
// runs the call checks it before the insert.
type pendingAdd struct {
	ctx  context.Context
	args []any
	done chan addResult // buffered: a sender never blocks on it
}

// addResult is the outcome of a pendingAdd, or, with lead set, the word
// that its caller is the next leader.
type addResult struct {
	err  error
	lead bool
}

// add inserts one certificate row and returns once it is committed, or
// with the insert's error, having changed nothing.
//
// A leader commits one batch, the calls waiting when it started, then
// hands the lead to the first call that arrived meanwhile and returns: no
// caller commits for others longer than one batch.
func (g *groupAdds) add(ctx context.Context, s *Store, args []any) error {
	p := &pendingAdd{ctx: ctx, args: args, done: make(chan addResult, 1)}
	g.mu.Lock()
	g.waiting = append(g.waiting, p)
	if g.leading {
		g.mu.Unlock()
		// Not abandoned when ctx is done: the row may be committing,
		// and a failed call must change nothing. The wait is bounded by
		// SQLite's busy timeout.
		r := <-p.done
		if !r.lead {
			return r.err
		}
		g.mu.Lock()
	}
	g.leading = true
	batch := g.waiting
	g.waiting = nil
	g.mu.Unlock()
	s.commitAdds(batch)
	g.mu.Lock()
	if len(g.waiting) > 0 {
		g.waiting[0].done <- addResult{lead: true}
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	return (<-p.done).err
}

// commitAdds inserts the rows of batch in one transaction and tells each
// caller its outcome. A duplicate serial fails only its own insert: in
// SQLite a constraint violation undoes the statement, not the
// transaction. Any other failure sends the batch back to one transaction
// per row, so that each caller gets its own error.
func (s *Store) commitAdds(batch []*pendingAdd) {
	var live []*pendingAdd
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.done <- addResult{err: err}
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	// Once started, an insert outlives its caller's context, so that a
	// committed row is never reported as failed; SQLite's busy timeout
	// bounds it instead.
	if len(live) == 1 {
		p := live[0]
		_, err := s.insert.ExecContext(context.WithoutCancel(p.ctx), p.args...)
		p.done <- addResult{err: err}
		return
	}
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
			_, err := s.insert.ExecContext(context.WithoutCancel(p.ctx), p.args...)
			p.done <- addResult{err: err}
		}
		return
	}
	for i, p := range live {
		p.done <- addResult{err: results[i]}
	}
}
