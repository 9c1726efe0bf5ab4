package ca

import (
	"cmp"
	"container/heap"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// BackgroundOptions configures a [Background]. The zero value alerts
// every certificate in its window and renews none (no HostFor).
type BackgroundOptions struct {
	// HostFor maps a certificate of the provider's inventory to the host
	// that holds it, for renewal through [Manager.Provision]. A nil
	// request with a nil error means the platform knows no host for it:
	// the certificate is alerted, not renewed. An error is a failed
	// renewal (alerted, retried with backoff). If nil, every certificate
	// is alerted only.
	HostFor func(ctx context.Context, rec *provider.CertificateRecord) (*ProvisionRequest, error)

	// Identity, if set, is the management server's own certificate: it
	// is renewed in place when due ([Identity.RenewIfDue]) at every wake,
	// and a failure is alerted and retried at the next wake. If nil, run
	// [Identity.Run] instead.
	Identity *Identity

	// Alert receives every alert, one at a time, from the task's
	// goroutines; it should not block for long. Alerts are logged
	// through Settings.Logger as well. If nil, they are only logged.
	Alert func(Alert)

	// Concurrency bounds the renewals in flight. If zero, 4.
	Concurrency int

	// RatePerSecond bounds how many renewals start per second. If zero,
	// 10.
	RatePerSecond float64

	// RetryBackoff is the delay before a failed renewal's first retry;
	// it doubles at each failure, up to Settings.BackgroundInterval. If
	// zero, one minute.
	RetryBackoff time.Duration

	// CAAlertPeriod: a CA certificate with less than this left before its
	// NotAfter is alerted once a day. If zero, Settings.Validity (from
	// then on the CA cannot cover a full-length leaf).
	CAAlertPeriod time.Duration

	// KeepSuperseded leaves a renewed certificate valid until it expires.
	// The zero value revokes it (reason superseded, through the provider
	// without re-signing the CRL at once) when its host has installed the
	// new certificate and reloaded, so that a key the host replaced opens
	// nothing any more. A certificate whose host failed to reload is
	// never revoked. With KeepSuperseded, the task remembers the renewed
	// certificates in memory only: after a restart, a replaced
	// certificate still in its window is renewed once more.
	KeepSuperseded bool

	// Sleep waits for d, or until ctx is done and then returns ctx's
	// error. If nil, a timer. Tests inject it, with Settings.Time, to run
	// a year of renewals in seconds.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Background is the background task (CloudStack's CABackgroundTask):
// it renews certificates before they expire, and alerts what it cannot
// renew. Unlike CloudStack's, it reads the provider's inventory, so a
// host that has not connected since the management server started is
// not forgotten; it also checks the CA certificates and the management
// server's own certificate.
//
// Each certificate is renewed at a moment of its own in the first half of
// its alert window (Settings.ExpiryAlertPeriod before its NotAfter),
// picked by a hash of its serial, so that the moment survives restarts and
// certificates issued on the same day renew over days, not in one minute.
// When more than one renewal per minute is due, starts are also spaced
// evenly over the wake interval; RatePerSecond and Concurrency bound them
// further. The second half of the window is left for retries.
//
// Run the task on one management server at a time: two would each renew
// the same hosts.
type Background struct {
	m        *Manager
	o        BackgroundOptions
	sleep    func(context.Context, time.Duration) error
	sem      chan struct{}
	rateGap  time.Duration
	backoff  time.Duration
	caAlert  time.Duration
	running  atomic.Bool
	alertMu  sync.Mutex // one Alert callback at a time
	lastScan atomic.Int64

	mu        sync.Mutex
	items     map[string]*renewal // by serial bytes
	queue     renewalQueue
	lastAlert map[string]time.Time // host or "ca:"+serial -> last alert
	gen       uint64
	gap       time.Duration // spacing of starts, from the last scan
	lastStart time.Time
	active    int                // renewals dispatched and not finished
	wake      context.CancelFunc // interrupts the dispatcher's sleep
	kicked    bool               // a retry was queued while the dispatcher was awake
	scanned   int                // records listed by the last scan
	caEnd     time.Time          // the issuing CA's NotAfter, at the last scan
}

// renewal is one certificate the task tracks.
type renewal struct {
	key      string
	rec      *provider.CertificateRecord
	at       time.Time // when due: its moment, or its next retry
	state    renewalState
	failures int
	name     string // host name, once known
	idx      int    // index in the queue, -1 when not queued
	seen     uint64 // scan generation that last listed it
}

type renewalState int

const (
	stateWaiting   renewalState = iota // queued or to be queued
	stateInFlight                      // a renewal is running
	stateDone                          // renewed (or installed): wait for it to leave the listing
	stateAlertOnly                     // no host: alerted once a day
)

// NewBackground returns the background task for m; run it with
// [Background.Run]. opts may be nil.
func (m *Manager) NewBackground(opts *BackgroundOptions) (*Background, error) {
	var o BackgroundOptions
	if opts != nil {
		o = *opts
	}
	switch {
	case o.Concurrency < 0:
		return nil, errors.New("ca: BackgroundOptions.Concurrency is negative")
	case o.RatePerSecond < 0:
		return nil, errors.New("ca: BackgroundOptions.RatePerSecond is negative")
	case o.RetryBackoff < 0:
		return nil, errors.New("ca: BackgroundOptions.RetryBackoff is negative")
	case o.CAAlertPeriod < 0:
		return nil, errors.New("ca: BackgroundOptions.CAAlertPeriod is negative")
	}
	b := &Background{
		m:         m,
		o:         o,
		sleep:     o.Sleep,
		sem:       make(chan struct{}, orDefault(o.Concurrency, defaultRenewalConcurrency)),
		rateGap:   time.Duration(float64(time.Second) / orDefault(o.RatePerSecond, defaultRenewalRate)),
		backoff:   orDefault(o.RetryBackoff, defaultRetryBackoff),
		caAlert:   orDefault(o.CAAlertPeriod, m.s.validity),
		items:     make(map[string]*renewal),
		lastAlert: make(map[string]time.Time),
	}
	if b.sleep == nil {
		b.sleep = timerSleep
	}
	return b, nil
}

func timerSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Run runs the task until ctx is done, and returns ctx's error after the
// renewals in flight have returned. It scans at once, then every
// Settings.BackgroundInterval (plus or minus a tenth, at random). A
// provider without an inventory is an error matching
// [errors.ErrUnsupported], returned by the first scan that finds it.
// Run may not be called twice at once.
func (b *Background) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("ca: background task already running")
	}
	defer b.running.Store(false)
	var workers sync.WaitGroup
	defer workers.Wait()
	nextScan := time.Time{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := b.m.s.now()
		if !now.Before(nextScan) {
			if err := b.scan(ctx, now); err != nil {
				if errors.Is(err, errors.ErrUnsupported) {
					return fmt.Errorf("ca: background task: %w", err)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				b.raise(&Alert{Kind: AlertScanFailed, Err: err})
			}
			nextScan = now.Add(time.Duration(float64(b.m.s.interval) * (0.9 + 0.2*rand.Float64())))
		}
		wakeAt := nextScan
		for {
			it, start := b.next(now)
			if it == nil {
				break
			}
			if start.After(now) {
				wakeAt = minTime(wakeAt, start)
				break
			}
			select {
			case b.sem <- struct{}{}:
			case <-ctx.Done():
				b.mu.Lock()
				it.state = stateWaiting
				b.active--
				b.mu.Unlock()
				return ctx.Err()
			}
			workers.Go(func() {
				defer func() { <-b.sem }()
				b.renew(ctx, it)
			})
			now = b.m.s.now()
		}
		if d := wakeAt.Sub(b.m.s.now()); d > 0 {
			b.mu.Lock()
			if b.kicked {
				b.kicked = false
				b.mu.Unlock()
				continue
			}
			sctx, cancel := context.WithCancel(ctx)
			b.wake = cancel
			b.mu.Unlock()
			_ = b.sleep(sctx, d) // an early return is a wake-up or ctx's end, checked above
			b.mu.Lock()
			b.wake = nil
			b.mu.Unlock()
			cancel()
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// next returns the first queued renewal and when it may start. If it may
// start at now, it is taken off the queue and counted active.
func (b *Background) next(now time.Time) (*renewal, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		return nil, time.Time{}
	}
	it := b.queue[0]
	start := it.at
	if !b.lastStart.IsZero() {
		if s := b.lastStart.Add(max(b.gap, b.rateGap)); s.After(start) {
			start = s
		}
	}
	if start.After(now) {
		return it, start
	}
	heap.Pop(&b.queue)
	it.state = stateInFlight
	b.active++
	b.lastStart = now
	return it, now
}

// moment is when rec is renewed: in the first half of its alert window,
// at a point picked by a hash of its serial.
func (b *Background) moment(rec *provider.CertificateRecord) time.Time {
	h := fnv.New64a()
	h.Write(rec.Serial.Bytes())
	frac := float64(h.Sum64()>>11) / (1 << 53)
	spread := b.m.s.alert / 2
	return rec.NotAfter.Add(-b.m.s.alert).Add(time.Duration(frac * float64(spread)))
}

// scan checks the management certificate and the CA certificates, and
// reads the inventory's certificates that enter their window before the
// next scan: renewals are queued, and certificates that are not renewed
// are alerted.
func (b *Background) scan(ctx context.Context, now time.Time) error {
	started := time.Now()
	if id := b.o.Identity; id != nil {
		if renewed, err := id.RenewIfDue(ctx); err != nil {
			c := id.Certificate()
			b.raise(&Alert{Kind: AlertManagementRenewalFailed, Serial: provider.FormatSerial(c.SerialNumber), Subject: c.Subject.String(), NotAfter: c.NotAfter, Err: err})
		} else if renewed {
			b.m.s.logger.Info("ca: background task renewed the management certificate", "serial", provider.FormatSerial(id.Certificate().SerialNumber))
		}
	}
	cas, err := b.m.CACertificates(ctx)
	if err != nil {
		return err
	}
	for _, c := range cas {
		if c.NotAfter.Sub(now) < b.caAlert {
			b.raiseOnce(now, "ca:"+string(c.SerialNumber.Bytes()), &Alert{Kind: AlertCAExpiring, Serial: provider.FormatSerial(c.SerialNumber),
				Subject: c.Subject.String(), NotAfter: c.NotAfter, Err: fmt.Errorf("the CA certificate ends in %v", c.NotAfter.Sub(now).Round(time.Hour))})
		}
	}
	// A renewal cannot take a certificate out of its window when the
	// issuing CA ends inside it: alert instead of renewing in a loop.
	var cause error
	switch {
	case b.o.HostFor == nil:
		cause = errors.New("no host mapping (BackgroundOptions.HostFor)")
	case !b.m.s.autoRenew:
		cause = nil // renewal is off: the alert says expiring, nothing failed
	case cas[0].NotAfter.Sub(now) <= b.m.s.alert:
		cause = fmt.Errorf("the issuing CA ends at %s, inside the alert window: a renewal cannot help", cas[0].NotAfter.UTC().Format(time.RFC3339))
	}
	alertOnly := b.o.HostFor == nil || !b.m.s.autoRenew || cause != nil
	valid := provider.StatusValid
	var recs []*provider.CertificateRecord
	err = b.m.with(func(h *handle) error {
		var err error
		recs, err = provider.ListCertificates(ctx, h.p, &provider.ListOptions{
			Status:         &valid,
			ExpiringBefore: now.Add(b.m.s.alert + b.m.s.interval*11/10),
		})
		return err
	})
	if err != nil {
		return err
	}
	type alertItem struct {
		it    *renewal
		cause error
	}
	var toAlert []alertItem
	b.mu.Lock()
	b.gen++
	for _, rec := range recs {
		if rec.Serial == nil || rec.Status != provider.StatusValid || !rec.NotAfter.After(now) {
			continue
		}
		key := string(rec.Serial.Bytes())
		it := b.items[key]
		if it == nil {
			it = &renewal{key: key, rec: rec, at: b.moment(rec), idx: -1}
			b.items[key] = it
		}
		it.seen = b.gen
		switch {
		case it.state == stateInFlight || it.state == stateDone:
		case alertOnly || it.state == stateAlertOnly:
			if it.idx >= 0 {
				heap.Remove(&b.queue, it.idx)
			}
			if !now.Before(rec.NotAfter.Add(-b.m.s.alert)) {
				c := cause
				if c == nil && it.state == stateAlertOnly {
					c = errNoHost
				}
				toAlert = append(toAlert, alertItem{it, c})
			}
		case it.idx < 0:
			heap.Push(&b.queue, it)
		}
	}
	for key, it := range b.items {
		if it.seen != b.gen && it.state != stateInFlight {
			if it.idx >= 0 {
				heap.Remove(&b.queue, it.idx)
			}
			delete(b.items, key)
		}
	}
	for k, t := range b.lastAlert {
		if now.Sub(t) >= alertRepeat {
			delete(b.lastAlert, k)
		}
	}
	due := 0
	horizon := now.Add(b.m.s.interval)
	for _, it := range b.queue {
		if !it.at.After(horizon) {
			due++
		}
	}
	b.gap = 0
	if perMinute := int(b.m.s.interval / time.Minute); due > perMinute {
		b.gap = b.m.s.interval * 4 / 5 / time.Duration(due)
	}
	b.scanned = len(recs)
	b.caEnd = cas[0].NotAfter
	b.mu.Unlock()
	for _, a := range toAlert {
		b.alertExpiring(ctx, now, a.it, a.cause)
	}
	b.lastScan.Store(int64(time.Since(started)))
	return nil
}

// alertExpiring raises AlertExpiring for it, at most once a day per host.
func (b *Background) alertExpiring(ctx context.Context, now time.Time, it *renewal, cause error) {
	b.mu.Lock()
	name := it.name
	b.mu.Unlock()
	if name == "" {
		name = recordName(it.rec)
		if b.o.HostFor != nil {
			if req, err := b.o.HostFor(ctx, it.rec); err == nil && req != nil && req.Name != "" {
				name = req.Name
			}
		}
		b.mu.Lock()
		it.name = name
		b.mu.Unlock()
	}
	b.raiseOnce(now, "host:"+name, &Alert{Kind: AlertExpiring, Host: name, Serial: provider.FormatSerial(it.rec.Serial),
		Subject: it.rec.Subject, NotAfter: it.rec.NotAfter, Err: cause})
}

// recordName names a certificate's host when the platform does not.
func recordName(rec *provider.CertificateRecord) string {
	switch {
	case len(rec.DNSNames) > 0:
		return rec.DNSNames[0]
	case len(rec.IPAddresses) > 0:
		return rec.IPAddresses[0].String()
	}
	return rec.Subject
}

var errNoHost = errors.New("the platform knows no host for this certificate")

// renew provisions the host of it, and settles its state.
func (b *Background) renew(ctx context.Context, it *renewal) {
	defer func() {
		b.mu.Lock()
		b.active--
		b.mu.Unlock()
	}()
	rec := it.rec
	serial := provider.FormatSerial(rec.Serial)
	if b.superseded(ctx, it) {
		return
	}
	req, err := b.o.HostFor(ctx, rec)
	if err == nil && req == nil {
		b.mu.Lock()
		it.state = stateAlertOnly
		b.mu.Unlock()
		b.alertExpiring(ctx, b.m.s.now(), it, errNoHost)
		return
	}
	name := recordName(rec)
	var res *ProvisionResult
	if err == nil {
		name = req.Name
		res, err = b.m.Provision(ctx, b.capValidity(req))
	}
	b.mu.Lock()
	it.name = name
	busy := errors.Is(err, ErrProvisionBusy)
	switch {
	case err == nil || res != nil:
		it.state = stateDone
	case ctx.Err() != nil:
		it.state = stateWaiting // Run is ending: not a failure of the host
	case busy:
		// Provisioned by someone else now (an administrator's call):
		// look again after the first backoff, with no alert; by then
		// the certificate is usually replaced.
		it.state = stateWaiting
		it.at = b.m.s.now().Add(b.backoff)
		heap.Push(&b.queue, it)
		if b.wake != nil {
			b.wake()
		} else {
			b.kicked = true
		}
	default:
		it.failures++
		it.state = stateWaiting
		it.at = b.m.s.now().Add(min(b.backoff<<min(it.failures-1, 30), max(b.m.s.interval, b.backoff)))
		heap.Push(&b.queue, it)
		if b.wake != nil {
			b.wake()
		} else {
			b.kicked = true
		}
	}
	b.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil && !busy {
			b.raise(&Alert{Kind: AlertRenewalFailed, Host: name, Serial: serial, Subject: rec.Subject, NotAfter: rec.NotAfter, Err: err})
		}
		return
	}
	b.m.s.logger.Info("ca: certificate renewed", "host", name, "old_serial", serial, "serial", provider.FormatSerial(res.Certificate.SerialNumber))
	if !b.o.KeepSuperseded {
		b.revokeSuperseded(ctx, name, rec)
	}
}

// superseded reports, and settles, a renewal whose certificate is no
// longer valid: it was revoked since the scan that queued it (up to an
// interval ago, or before a retry's backoff), typically because its host
// was provisioned by someone else meanwhile and the old certificate
// revoked as superseded. Renewing it would provision a host just
// provisioned, or alert about a certificate nobody uses.
func (b *Background) superseded(ctx context.Context, it *renewal) bool {
	var cur *provider.CertificateRecord
	err := b.m.with(func(h *handle) error {
		var err error
		cur, err = provider.LookupCertificate(ctx, h.p, it.rec.Serial)
		return err
	})
	if err != nil || cur == nil || cur.Status == provider.StatusValid {
		return false // not known to be replaced: renew as before
	}
	b.mu.Lock()
	it.state = stateDone
	b.mu.Unlock()
	b.m.s.logger.Info("ca: renewal dropped: the certificate was replaced meanwhile", "serial", provider.FormatSerial(it.rec.Serial),
		"status", cur.Status.String())
	return true
}

// capValidity shortens a request that would outlive the issuing CA (a
// provider refuses it): near the CA's end, a shorter certificate is
// better than none.
func (b *Background) capValidity(req *ProvisionRequest) *ProvisionRequest {
	v := cmp.Or(req.Validity, b.m.s.validity)
	b.mu.Lock()
	room := b.caEnd.Sub(b.m.s.now()) - identityMargin
	b.mu.Unlock()
	if v <= room || room <= 0 {
		return req
	}
	r := *req
	r.Validity = room
	return &r
}

// revokeSuperseded revokes a renewed certificate through the provider.
// The CRL is not re-signed for it (the key was replaced, not
// compromised): it is in the next CRL.
func (b *Background) revokeSuperseded(ctx context.Context, name string, rec *provider.CertificateRecord) {
	req := &provider.RevokeRequest{Serial: rec.Serial, Reason: provider.ReasonSuperseded}
	if len(rec.Raw) > 0 {
		if c, err := x509.ParseCertificate(rec.Raw); err == nil {
			req.Certificate = c
		}
	}
	err := b.m.with(func(h *handle) error { return h.p.Revoke(ctx, req) })
	if err != nil && !errors.Is(err, provider.ErrAlreadyRevoked) {
		b.m.s.logger.Warn("ca: revoking a superseded certificate failed; it stays valid until it expires", "host", name, "serial", provider.FormatSerial(rec.Serial), "error", err)
	}
}

// raiseOnce raises a at most once a day per key.
func (b *Background) raiseOnce(now time.Time, key string, a *Alert) {
	b.mu.Lock()
	last, ok := b.lastAlert[key]
	if ok && now.Sub(last) < alertRepeat && !now.Before(last) {
		b.mu.Unlock()
		return
	}
	b.lastAlert[key] = now
	b.mu.Unlock()
	b.raise(a)
}

// raise logs a and hands it to the platform.
func (b *Background) raise(a *Alert) {
	attrs := []any{"kind", a.Kind.String(), "host", a.Host, "serial", a.Serial, "subject", a.Subject, "not_after", a.NotAfter}
	if a.Err != nil {
		attrs = append(attrs, "error", a.Err)
	}
	b.m.s.logger.Warn("ca: alert", attrs...)
	if b.o.Alert != nil {
		b.alertMu.Lock()
		defer b.alertMu.Unlock()
		b.o.Alert(*a)
	}
}

// renewalQueue is a min-heap of renewals by due time.
type renewalQueue []*renewal

func (q renewalQueue) Len() int { return len(q) }
func (q renewalQueue) Less(i, j int) bool {
	if c := q[i].at.Compare(q[j].at); c != 0 {
		return c < 0
	}
	return q[i].key < q[j].key
}
func (q renewalQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx = i
	q[j].idx = j
}
func (q *renewalQueue) Push(x any) {
	it := x.(*renewal)
	it.idx = len(*q)
	*q = append(*q, it)
}
func (q *renewalQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	old[len(old)-1] = nil
	it.idx = -1
	*q = old[:len(old)-1]
	return it
}
