package libvirttls

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestExecActionRun(t *testing.T) {
	t.Parallel()
	failing := errors.New("guest gone")
	for _, tc := range []struct {
		name string
		a    Action
		want error
	}{
		{name: "Run instead of Command", a: Action{Command: []string{"/nonexistent/virsh"}, Run: func(context.Context) error { return nil }}},
		{name: "Run's error", a: Action{Command: []string{"/nonexistent/virsh"}, Run: func(context.Context) error { return failing }}, want: failing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ExecAction(t.Context(), tc.a)
			if tc.want == nil {
				assert.NoError(t, err, "Command is not run when Run is set")
			} else {
				assert.ErrorIs(t, err, tc.want)
			}
		})
	}
}

// TestReloadVNCActions: the guests' VNC reload is planned when a file of
// the VNC directory is replaced (renewal, new CRL), not on a first
// install, where no running guest has VNC TLS.
func TestReloadVNCActions(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	opts := &Config{LookupGroup: fakeGroups, Root: newRoot(t)}
	hasReload := func(p *Plan) bool {
		for _, a := range p.Actions {
			if len(a.Command) > 1 && a.Command[1] == "qemu-monitor-command" {
				return a.Run != nil
			}
		}
		return false
	}
	first := applyCreds(t, creds, opts)
	assert.False(t, hasReload(first), "first install")

	creds.CRL = ca.crl(t)
	assert.True(t, hasReload(applyCreds(t, creds, opts)), "a CRL replaced in the VNC directory")

	renewed, _ := ca.host(t, "kvm1.example.org")
	renewed.CRL = creds.CRL
	assert.True(t, hasReload(applyCreds(t, renewed, opts)), "a renewed certificate")

	again, err := NewPlan(t.Context(), renewed, opts)
	if assert.NoError(t, err) {
		assert.False(t, hasReload(again), "nothing changed")
	}
}
