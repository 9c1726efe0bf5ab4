package mysql_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rootca/sqlstore"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/internal/redact/redacttest"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/mysql"
)

// TestOpenRedactsPassword is issue 11, item 7 for MariaDB: whatever the
// DSN, no piece of its password is in the error.
func TestOpenRedactsPassword(t *testing.T) {
	tests := []struct {
		name, dsn, password string
	}{
		{"at and slash", "ca:Secr3t@Tail/Rest@tcp(127.0.0.1:1)/kvmpki?timeout=1s", "Secr3t@Tail/Rest"},
		{"unterminated address", "ca:Secr3tPw@tcp(127.0.0.1:1/kvmpki", "Secr3tPw"},
		{"no slash", "ca:Secr3tPw@tcp(127.0.0.1:1)", "Secr3tPw"},
		{"bad parameter", "ca:Secr3tPw@tcp(127.0.0.1:1)/kvmpki?parseTime=Secr3tPw", "Secr3tPw"},
		{"unknown network", "ca:Secr3tPw@Secr3tPw(127.0.0.1:1)/kvmpki", "Secr3tPw"},
		{"closed port", "ca:Secr3tPw@tcp(127.0.0.1:1)/kvmpki?timeout=1s", "Secr3tPw"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			s, err := mysql.Open(ctx, tc.dsn)
			if s != nil {
				s.Close()
			}
			require.Error(t, err)
			_, uerr := sqlstore.OpenURL(ctx, "mysql://"+tc.dsn, mysql.Backend())
			require.Error(t, uerr)
			redacttest.AssertNoPiece(t, err, tc.password)
			redacttest.AssertNoPiece(t, uerr, tc.password)
		})
	}
}
