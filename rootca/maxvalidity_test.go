package rootca_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// TestMaxValidity: IssueRequest.MaxValidity and RenewRequest.MaxValidity
// bound the default validity (rootca issues the shorter of the two), an
// explicit Validity wins over it, and a negative one is refused.
func TestMaxValidity(t *testing.T) {
	ca, _ := newCA(t, nil)
	ctx := t.Context()
	issued, err := ca.Issue(ctx, &provider.IssueRequest{DNSNames: []string{"kvm0.example.org"}, Role: provider.RoleHost})
	require.NoError(t, err)
	tests := []struct {
		name          string
		validity, max time.Duration
		want          time.Duration // zero: refused
	}{
		{name: "bound", max: 2 * time.Hour, want: 2 * time.Hour},
		{name: "bound beyond the default", max: 100 * 365 * 24 * time.Hour, want: 365 * 24 * time.Hour},
		{name: "validity wins", validity: 3 * time.Hour, max: time.Hour, want: 3 * time.Hour},
		{name: "negative", max: -time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, op := range []string{"Issue", "Renew"} {
				start := time.Now()
				var res *provider.IssueResult
				var err error
				if op == "Issue" {
					res, err = ca.Issue(ctx, &provider.IssueRequest{DNSNames: []string{"kvm1.example.org"}, Role: provider.RoleHost, Validity: tc.validity, MaxValidity: tc.max})
				} else {
					res, err = ca.Renew(ctx, &provider.RenewRequest{Certificate: issued.Certificate, Validity: tc.validity, MaxValidity: tc.max})
				}
				if tc.want == 0 {
					assert.ErrorIs(t, err, provider.ErrInvalidRequest, op)
					continue
				}
				require.NoError(t, err, op)
				assert.WithinRange(t, res.Certificate.NotAfter, start.Add(tc.want-time.Minute), time.Now().Add(tc.want+time.Second), op)
			}
		})
	}
}
