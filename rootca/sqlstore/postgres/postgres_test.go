package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rootca/sqlstore"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/internal/redact/redacttest"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/postgres"
)

// TestOpenRefusesAmbiguousURL is issue 11, item 7: a password holding '@'
// then '/' made pgx take its tail ("Tail") for the host, resolve it, and
// show it in the error. The URL is refused before anything parses or
// resolves it, and no piece of the password is in the error.
func TestOpenRefusesAmbiguousURL(t *testing.T) {
	tests := []struct {
		name, url, password string
	}{
		{"issue reproducer", "postgres://ca:Secr3t@Tail/Rest@db/kvmpki", "Secr3t@Tail/Rest"},
		{"postgresql scheme", "postgresql://ca:Secr3t@Tail/Rest@db/kvmpki", "Secr3t@Tail/Rest"},
		{"upper-case scheme", "POSTGRES://ca:Secr3t@Tail/Rest@db/kvmpki", "Secr3t@Tail/Rest"},
		{"slash only", "postgres://ca:Secr3t/Tail@db/kvmpki", "Secr3t/Tail"},
		{"two at signs", "postgres://ca:Secr3t@Tail@db/kvmpki", "Secr3t@Tail"},
		{"question mark", "postgres://ca:Secr3t?Tail@db/kvmpki", "Secr3t?Tail"},
		{"hash", "postgres://ca:Secr3t#Tail@db/kvmpki", "Secr3t#Tail"},
		{"at sign in the query", "postgres://ca:Secr3t@db/kvmpki?x=Tail@Rest", "Secr3t"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			start := time.Now()
			s, err := postgres.Open(ctx, tc.url)
			if s != nil {
				s.Close()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "malformed URL")
			assert.Less(t, time.Since(start), time.Second, "refused before any lookup or dial")
			redacttest.AssertNoPiece(t, err, tc.password)
			// The same through OpenURL.
			_, err = sqlstore.OpenURL(ctx, tc.url, postgres.Backend())
			require.Error(t, err)
			redacttest.AssertNoPiece(t, err, tc.password)
		})
	}
}

// TestOpenRedactsPassword checks URLs that parse but cannot be opened:
// the password stays out of the error.
func TestOpenRedactsPassword(t *testing.T) {
	tests := []struct {
		name, url, password string
	}{
		{"bad port", "postgres://ca:Secr3tPw@127.0.0.1:notaport/kvmpki", "Secr3tPw"},
		{"encoded at sign, closed port", "postgres://ca:Secr3t%40Tail@127.0.0.1:1/kvmpki?connect_timeout=1", "Secr3t@Tail"},
		{"keyword/value", "host=127.0.0.1 port=1 password=Secr3tPw connect_timeout=1 dbname=kvmpki", "Secr3tPw"},
		{"bad sslmode", "postgres://ca:Secr3tPw@127.0.0.1/kvmpki?sslmode=bogus", "Secr3tPw"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			s, err := postgres.Open(ctx, tc.url)
			if s != nil {
				s.Close()
			}
			require.Error(t, err)
			redacttest.AssertNoPiece(t, err, tc.password)
		})
	}
}
