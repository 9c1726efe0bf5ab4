package ca

import (
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// WaitIdle blocks until no renewal of b is in flight: a fake Sleep calls
// it before moving the clock, so that simulated time stands still while a
// renewal runs.
func WaitIdle(b *Background) {
	for {
		b.mu.Lock()
		n := b.active
		b.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// LastScan returns how many records b's last scan listed and how long
// it took (wall-clock).
func LastScan(b *Background) (int, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.scanned, time.Duration(b.lastScan.Load())
}

// RenewalMoment is when b renews rec when nothing else is due.
func RenewalMoment(b *Background, rec *provider.CertificateRecord) time.Time { return b.moment(rec) }
