package provider_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// leaser is a provider with the rotation lease capability; each method
// records its call and answers with errCapable.
type leaser struct {
	staticProvider
	calls []string
}

var _ provider.RotationLeaser = (*leaser)(nil)

func (l *leaser) record(call string) error { l.calls = append(l.calls, call); return errCapable }

func (l *leaser) BeginCARotation(context.Context) error { return l.record("BeginCARotation") }
func (l *leaser) CARotationStatus(context.Context) (*provider.RotationStatus, error) {
	return nil, l.record("CARotationStatus")
}
func (l *leaser) RetirePreviousCA(context.Context, bool) error { return l.record("RetirePreviousCA") }
func (l *leaser) ClaimCARotation(context.Context, string, time.Duration) error {
	return l.record("ClaimCARotation")
}
func (l *leaser) ReleaseCARotation(context.Context, string) error {
	return l.record("ReleaseCARotation")
}
func (l *leaser) SetCARotationPushPending(context.Context, string, bool) error {
	return l.record("SetCARotationPushPending")
}

// TestRotationCapabilities: each rotation package function reaches the
// provider's method, and names the capability with
// errors.ErrUnsupported for a provider without it.
func TestRotationCapabilities(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, method, capability string
		call                     func(provider.Provider) error
	}{
		{"BeginRotation", "BeginCARotation", "CA rotation", func(p provider.Provider) error { return provider.BeginRotation(ctx, p) }},
		{"Rotation", "CARotationStatus", "CA rotation", func(p provider.Provider) error { _, err := provider.Rotation(ctx, p); return err }},
		{"RetirePrevious", "RetirePreviousCA", "CA rotation", func(p provider.Provider) error { return provider.RetirePrevious(ctx, p, false) }},
		{"ClaimRotation", "ClaimCARotation", "CA rotation leases", func(p provider.Provider) error {
			return provider.ClaimRotation(ctx, p, "server-1", time.Minute)
		}},
		{"ReleaseRotation", "ReleaseCARotation", "CA rotation leases", func(p provider.Provider) error {
			return provider.ReleaseRotation(ctx, p, "server-1")
		}},
		{"SetRotationPushPending", "SetCARotationPushPending", "CA rotation leases", func(p provider.Provider) error {
			return provider.SetRotationPushPending(ctx, p, "server-1", true)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &leaser{staticProvider: staticProvider{name: "root"}}
			assert.ErrorIs(t, tc.call(l), errCapable)
			assert.Equal(t, []string{tc.method}, l.calls)

			err := tc.call(&staticProvider{name: "acme"})
			require.ErrorIs(t, err, errors.ErrUnsupported)
			assert.Equal(t, "provider: acme does not support "+tc.capability+": unsupported operation", err.Error())
		})
	}
}

// TestRotationBusyError: the error matches ErrRotationBusy and names the
// holder and its expiry; without a holder it says the lease is not held.
func TestRotationBusyError(t *testing.T) {
	until := time.Date(2027, 1, 2, 3, 4, 5, 0, time.FixedZone("UTC+1", 3600))
	tests := []struct {
		name string
		err  *provider.RotationBusyError
		want string
	}{
		{"held", &provider.RotationBusyError{Holder: "mgmt-2 pid 7 0a1b", Until: until},
			`provider: another driver holds the CA rotation lease: "mgmt-2 pid 7 0a1b" until 2027-01-02T02:04:05Z`},
		{"not held", &provider.RotationBusyError{},
			"provider: the CA rotation lease is not held (it expired or was released): claim it again"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error = tc.err
			assert.ErrorIs(t, err, provider.ErrRotationBusy)
			assert.Equal(t, tc.want, err.Error())
		})
	}
}

// TestRotationStatusPhases: PushPending and Lease do not change what
// InProgress, Issuing and Previous report.
func TestRotationStatusPhases(t *testing.T) {
	st := &provider.RotationStatus{
		Authorities: []provider.RotationAuthority{{Trusted: false}, {Issuing: true, Trusted: true}},
		PushPending: true,
		Lease:       &provider.RotationLease{Holder: "server-1", Until: time.Now()},
	}
	assert.False(t, st.InProgress())
	assert.Empty(t, st.Previous())
	require.NotNil(t, st.Issuing())
	assert.True(t, st.Issuing().Issuing)
}
