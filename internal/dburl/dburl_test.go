package dburl_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/dburl"
)

func TestWithPassword(t *testing.T) {
	tests := []struct {
		name, url, password, want, wantErr string
	}{
		{"postgres", "postgres://ca@db.example.org/kvmpki", "s3cret", "postgres://ca:s3cret@db.example.org/kvmpki", ""},
		{"postgres keeps its own", "postgres://ca:mine@db.example.org/kvmpki", "s3cret", "postgres://ca:mine@db.example.org/kvmpki", ""},
		{"postgres no user", "postgres://db.example.org/kvmpki", "s3cret", "", "with a user"},
		{"mysql", "mysql://ca@tcp(db.example.org:3306)/kvmpki", "s3cret", "mysql://ca:s3cret@tcp(db.example.org:3306)/kvmpki", ""},
		{"no password", "mysql://ca@tcp(db.example.org:3306)/kvmpki", "", "mysql://ca@tcp(db.example.org:3306)/kvmpki", ""},
		{"sqlite", "sqlite:/var/lib/ca.db", "s3cret", "", "neither postgres:// nor mysql://"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dburl.WithPassword(tc.url, tc.password)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				assert.NotContains(t, err.Error(), tc.password)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestHasPassword(t *testing.T) {
	tests := []struct {
		name, url string
		want      bool
	}{
		{"postgres user only", "postgres://ca@db/kvmpki", false},
		{"postgres user and password", "postgres://ca:pw@db/kvmpki", true},
		{"postgres password parameter", "postgres://ca@db/kvmpki?password=pw", true},
		{"postgresql scheme", "postgresql://ca:pw@db/kvmpki", true},
		{"mysql user only", "mysql://ca@tcp(db:3306)/kvmpki", false},
		{"mysql password", "mysql://ca:pw@tcp(db:3306)/kvmpki", true},
		{"mysql unparsable with password", "mysql://ca:pw@tcp(db:3306/kvmpki", true},
		{"sqlite", "sqlite:/var/lib/ca.db", false},
		{"garbage", "::::", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, dburl.HasPassword(tc.url))
		})
	}
}
