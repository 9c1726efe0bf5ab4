package providertest_test

import (
	"context"
	"sync"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// sloppyLeaser is a toy CA with a rotation lease that checks nothing:
// every claim wins and anyone may set PushPending, the bug a lease
// without compare-and-set has. The RotationLeaser checks must fail.
type sloppyLeaser struct {
	*toyCA
	mu      sync.Mutex
	holder  string
	until   time.Time
	pending bool
}

func (l *sloppyLeaser) BeginCARotation(context.Context) error        { return provider.ErrRotationInProgress }
func (l *sloppyLeaser) RetirePreviousCA(context.Context, bool) error { return provider.ErrNotRetirable }

func (l *sloppyLeaser) CARotationStatus(context.Context) (*provider.RotationStatus, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := &provider.RotationStatus{PushPending: l.pending}
	if l.holder != "" {
		st.Lease = &provider.RotationLease{Holder: l.holder, Until: l.until}
	}
	return st, nil
}

func (l *sloppyLeaser) ClaimCARotation(_ context.Context, holder string, ttl time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.holder, l.until = holder, time.Now().Add(ttl)
	return nil
}

func (l *sloppyLeaser) ReleaseCARotation(_ context.Context, holder string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.holder = ""
	return nil
}

func (l *sloppyLeaser) SetCARotationPushPending(_ context.Context, _ string, pending bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = pending
	return nil
}
