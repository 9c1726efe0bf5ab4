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

// This file holds the CA generations of rotation (schema version 3):
// generation 1 is the authority table's row, later ones rows of
// authority_generations.

var _ rootca.RotationStore = (*Store)(nil)

// Generations returns every CA generation, oldest first. It reads outside
// a transaction: a generation and its chain are committed together and
// only ever gain a retirement time, so the reads are consistent.
func (s *Store) Generations(ctx context.Context) ([]rootca.Generation, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	gens, err := s.readGenerations(ctx, s.db)
	if errors.Is(err, errNoAuthorityRow) {
		return nil, storecheck.ErrNoAuthority
	}
	if err != nil {
		return nil, fmt.Errorf("rootca: generations: %w", err)
	}
	return gens, nil
}

// errNoAuthorityRow marks an empty store inside readGenerations.
var errNoAuthorityRow = errors.New("no authority")

// readGenerations reads the generations on q.
func (s *Store) readGenerations(ctx context.Context, q querier) ([]rootca.Generation, error) {
	var (
		key     []byte
		retired sql.NullString
	)
	err := q.QueryRowContext(ctx, s.d.rebind(`SELECT private_key, retired_at FROM authority WHERE id = 1`)).Scan(&key, &retired)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoAuthorityRow
	}
	if err != nil {
		return nil, err
	}
	first, err := generationOf(1, key, retired)
	if err != nil {
		return nil, err
	}
	gens := []rootca.Generation{first}
	rows, err := q.QueryContext(ctx, s.d.rebind(`SELECT generation, private_key, retired_at FROM authority_generations ORDER BY generation`))
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var n int
		if err := rows.Scan(&n, &key, &retired); err != nil {
			rows.Close()
			return nil, err
		}
		g, err := generationOf(n, key, retired)
		if err != nil {
			rows.Close()
			return nil, err
		}
		gens = append(gens, g)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range gens {
		query := `SELECT der FROM authority_certificates WHERE authority_id = ? ORDER BY seq`
		if gens[i].Number > 1 {
			query = `SELECT der FROM authority_generation_certificates WHERE generation = ? ORDER BY seq`
		}
		arg := gens[i].Number
		rows, err := q.QueryContext(ctx, s.d.rebind(query), arg)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var der []byte
			if err := rows.Scan(&der); err != nil {
				rows.Close()
				return nil, err
			}
			gens[i].Certificates = append(gens[i].Certificates, der)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if len(gens[i].Certificates) == 0 {
			return nil, fmt.Errorf("generation %d has no certificates", gens[i].Number)
		}
	}
	return gens, nil
}

func generationOf(n int, key []byte, retired sql.NullString) (rootca.Generation, error) {
	g := rootca.Generation{Number: n}
	if len(key) > 0 {
		g.Key = key
	}
	if retired.Valid {
		t, err := parseTime(retired.String)
		if err != nil {
			return g, fmt.Errorf("generation %d: stored retired_at: %w", n, err)
		}
		g.RetiredAt = t
	}
	return g, nil
}

// querier is a *sql.Tx or *sql.DB.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// bumpGenerations takes the authority_changes row lock, which serialises
// the changes of generations, and counts the change.
func (s *Store) bumpGenerations(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, s.d.rebind(`UPDATE authority_changes SET last_change = last_change + 1 WHERE id = 1`))
	return err
}

// AddGeneration stores g as the newest generation. The authority_changes
// row lock, taken first, makes the check and the insert one step across
// processes; the generation's primary key backs it up.
func (s *Store) AddGeneration(ctx context.Context, g *rootca.Generation) error {
	var number int
	var certs [][]byte
	if g != nil {
		number, certs = g.Number, g.Certificates
	}
	if err := storecheck.Generation(number, certs, g == nil); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	var key []byte
	if len(g.Key) > 0 {
		key = g.Key
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.bumpGenerations(ctx, tx); err != nil {
			return err
		}
		gens, err := s.readGenerations(ctx, tx)
		if err != nil {
			return err
		}
		if newest := gens[len(gens)-1].Number; g.Number != newest+1 {
			return fmt.Errorf("%w (generation %d exists)", storecheck.ErrRotationInProgress, min(g.Number, newest))
		}
		for _, old := range gens[:len(gens)-1] {
			if old.RetiredAt.IsZero() {
				return fmt.Errorf("%w (generation %d is not retired)", storecheck.ErrRotationInProgress, old.Number)
			}
		}
		if _, err := tx.ExecContext(ctx, s.d.rebind(
			`INSERT INTO authority_generations (generation, private_key) VALUES (?, ?)`), g.Number, key); err != nil {
			if s.d.isUniqueViolation(err) {
				return fmt.Errorf("%w (generation %d exists)", storecheck.ErrRotationInProgress, g.Number)
			}
			return err
		}
		for i, der := range g.Certificates {
			if _, err := tx.ExecContext(ctx, s.d.rebind(
				`INSERT INTO authority_generation_certificates (generation, seq, der) VALUES (?, ?, ?)`), g.Number, i, der); err != nil {
				return err
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errNoAuthorityRow):
		return storecheck.ErrNoAuthority
	case errors.Is(err, storecheck.ErrRotationInProgress):
		return err
	case err != nil:
		// Driver errors name constraints and tables, never bound values.
		return fmt.Errorf("rootca: add generation %d: %w", g.Number, err)
	}
	return nil
}

// RetireGeneration marks generation number retired.
func (s *Store) RetireGeneration(ctx context.Context, number int, at time.Time) error {
	if err := storecheck.Retirement(number, at); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.bumpGenerations(ctx, tx); err != nil {
			return err
		}
		var newest int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(generation), 1) FROM authority_generations`).Scan(&newest); err != nil {
			return err
		}
		if number >= newest {
			return storecheck.ErrNotRetirable
		}
		query := `UPDATE authority SET retired_at = ? WHERE id = ? AND retired_at IS NULL`
		if number > 1 {
			query = `UPDATE authority_generations SET retired_at = ? WHERE generation = ? AND retired_at IS NULL`
		}
		res, err := tx.ExecContext(ctx, s.d.rebind(query), formatTime(at), number)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return storecheck.ErrNotRetirable
		}
		return nil
	})
	if errors.Is(err, storecheck.ErrNotRetirable) {
		return fmt.Errorf("%w (generation %d)", err, number)
	}
	if err != nil {
		return fmt.Errorf("rootca: retire generation %d: %w", number, err)
	}
	return nil
}

// GenerationStamp returns the count of generation changes: one indexed
// row.
func (s *Store) GenerationStamp(ctx context.Context) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	var n int64
	if err := s.db.QueryRowContext(ctx, s.d.rebind(`SELECT last_change FROM authority_changes WHERE id = 1`)).Scan(&n); err != nil {
		return 0, fmt.Errorf("rootca: generation stamp: %w", err)
	}
	return n, nil
}
