package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

// simHost is an in-memory ca.Host: it answers with a CSR for a key made
// once, and records when each renewal started (simulated time).
type simHost struct {
	name  string
	csr   []byte
	now   func() time.Time
	fails atomic.Int32  // SetupKeystore fails this many more times
	block time.Duration // real time SetupKeystore takes
	track *inflight     // counts concurrent calls, if set
	mu    sync.Mutex
	certs []*x509.Certificate // installed, in order
	setup []time.Time         // when SetupKeystore was called
}

var errHostDown = errors.New("host unreachable")

type inflight struct{ cur, peak atomic.Int32 }

func (f *inflight) enter() {
	n := f.cur.Add(1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func newSimHost(t testing.TB, name string, now func() time.Time) *simHost {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, key)
	require.NoError(t, err)
	return &simHost{name: name, csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), now: now}
}

func (h *simHost) SetupKeystore(ctx context.Context, _ *ca.KeystoreSetup) ([]byte, error) {
	if h.track != nil {
		h.track.enter()
		defer h.track.cur.Add(-1)
	}
	h.mu.Lock()
	h.setup = append(h.setup, h.now())
	h.mu.Unlock()
	if h.block > 0 {
		time.Sleep(h.block)
	}
	if h.fails.Add(-1) >= 0 {
		return nil, errHostDown
	}
	return h.csr, nil
}

func (h *simHost) InstallCertificate(_ context.Context, c *ca.CertificateInstall) error {
	b, _ := pem.Decode(c.CertificatePEM)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.certs = append(h.certs, cert)
	h.mu.Unlock()
	return nil
}

func (h *simHost) Reload(context.Context) error { return nil }

func (h *simHost) current() *x509.Certificate {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.certs[len(h.certs)-1]
}

func (h *simHost) installed() []*x509.Certificate {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*x509.Certificate(nil), h.certs...)
}

func (h *simHost) setups() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.setup...)
}

// fleet is a set of simHosts provisioned through a Manager, found again
// by their first DNS name.
type fleet struct {
	hosts map[string]*simHost
}

func (f *fleet) hostFor(_ context.Context, rec *provider.CertificateRecord) (*ca.ProvisionRequest, error) {
	if len(rec.DNSNames) == 0 {
		return nil, nil
	}
	h := f.hosts[rec.DNSNames[0]]
	if h == nil {
		return nil, nil
	}
	return &ca.ProvisionRequest{Name: h.name, Host: h, DNSNames: []string{h.name}}, nil
}

func newFleet(t testing.TB, m *ca.Manager, clk *clock, n int, spread time.Duration) *fleet {
	t.Helper()
	f := &fleet{hosts: map[string]*simHost{}}
	start := clk.Now()
	for i := range n {
		h := newSimHost(t, fmt.Sprintf("kvm%05d.example.org", i), clk.Now)
		if n > 1 {
			clk.Set(start.Add(spread * time.Duration(i) / time.Duration(n-1)))
		}
		_, err := m.Provision(context.Background(), &ca.ProvisionRequest{Name: h.name, Host: h, DNSNames: []string{h.name}})
		require.NoError(t, err)
		f.hosts[h.name] = h
		h.mu.Lock()
		h.setup = nil // the first provisioning is not a renewal
		h.mu.Unlock()
	}
	return f
}

// simRun runs bg on simulated time until the clock reaches end: Sleep
// waits for the renewals in flight, then moves the clock. With
// concurrent set, a sleep shorter than a second moves the clock at once,
// so that renewals overlap.
func simRun(t testing.TB, bg **ca.Background, clk *clock, end time.Time, concurrent bool) func(ctx context.Context, d time.Duration) error {
	t.Helper()
	return func(ctx context.Context, d time.Duration) error {
		if !concurrent || d >= time.Second {
			ca.WaitIdle(*bg)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		next := clk.Now().Add(d)
		if next.After(end) {
			// The end of the simulation: runUntil cancels Run.
			clk.Set(end)
			<-ctx.Done()
			return ctx.Err()
		}
		clk.Set(next)
		return nil
	}
}

// runUntil runs bg until the simulated clock would pass end.
func runUntil(t testing.TB, bg *ca.Background, clk *clock, end time.Time) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- bg.Run(ctx) }()
	for clk.Now().Before(end) {
		select {
		case err := <-done:
			require.NoError(t, err, "Run returned early")
			return
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	err := <-done
	require.ErrorIs(t, err, context.Canceled)
}

// newSim builds a manager on a simulated clock, a fleet of n hosts issued
// over spread, and a Background whose Sleep moves the clock up to end.
type sim struct {
	e      *env
	fleet  *fleet
	bg     *ca.Background
	end    time.Time
	alerts *alertLog
}

type alertLog struct {
	mu sync.Mutex
	a  []ca.Alert
	at []time.Time
}

func (l *alertLog) list(kind ca.AlertKind) ([]ca.Alert, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ca.Alert
	var at []time.Time
	for i, a := range l.a {
		if a.Kind == kind {
			out = append(out, a)
			at = append(at, l.at[i])
		}
	}
	return out, at
}

var simStart = time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC)

func newSim(t *testing.T, s ca.Settings, caValid time.Duration, hosts int, length time.Duration, o ca.BackgroundOptions, concurrent bool) *sim {
	t.Helper()
	e := newEnv(t, &envOptions{settings: s, caValid: caValid})
	e.clock.Set(simStart)
	f := newFleet(t, e.m, e.clock, hosts, time.Hour)
	x := &sim{e: e, fleet: f, end: simStart.Add(length), alerts: &alertLog{}}
	if o.HostFor == nil {
		o.HostFor = f.hostFor
	}
	o.Alert = func(a ca.Alert) {
		x.alerts.mu.Lock()
		x.alerts.a = append(x.alerts.a, a)
		x.alerts.at = append(x.alerts.at, e.clock.Now())
		x.alerts.mu.Unlock()
	}
	o.Sleep = simRun(t, &x.bg, e.clock, x.end, concurrent)
	bg, err := e.m.NewBackground(&o)
	require.NoError(t, err)
	x.bg = bg
	return x
}

func recordOf(c *x509.Certificate) *provider.CertificateRecord {
	return &provider.CertificateRecord{Serial: c.SerialNumber, NotAfter: c.NotAfter}
}

// TestBackgroundRenewsAYear: a year of simulated time with 90-day
// certificates: every host is renewed before its certificate expires,
// each renewal starts exactly at the certificate's moment (inside the
// first half of its alert window), the replaced certificate is revoked as
// superseded, and no alert is raised.
func TestBackgroundRenewsAYear(t *testing.T) {
	const alert = 15 * 24 * time.Hour
	x := newSim(t, ca.Settings{Validity: 90 * 24 * time.Hour, ExpiryAlertPeriod: alert}, 5*365*24*time.Hour, 40, 365*24*time.Hour, ca.BackgroundOptions{}, false)
	runUntil(t, x.bg, x.e.clock, x.end)

	for name, h := range x.fleet.hosts {
		certs := h.installed()
		starts := h.setups()
		require.Len(t, starts, len(certs)-1, "%s: one setup per renewal", name)
		assert.GreaterOrEqual(t, len(certs), 5, "%s: 90-day certificates renewed over a year", name)
		for i, at := range starts {
			old := certs[i]
			want := ca.RenewalMoment(x.bg, recordOf(old))
			assert.Equal(t, want, at, "%s: renewal %d starts at its moment", name, i)
			assert.True(t, at.Before(old.NotAfter.Add(-alert/2)), "%s: renewal %d in the first half of the window", name, i)
			assert.False(t, at.Before(old.NotAfter.Add(-alert)), "%s: renewal %d not before the window", name, i)
			rec, err := x.e.root.LookupCertificate(context.Background(), old.SerialNumber)
			require.NoError(t, err)
			assert.Equal(t, provider.StatusRevoked, rec.Status, "%s: replaced certificate revoked", name)
			assert.Equal(t, provider.ReasonSuperseded, rec.Reason)
		}
		assert.True(t, h.current().NotAfter.After(x.end), "%s: holds a valid certificate at the end", name)
	}
	assert.Empty(t, x.alerts.a, "no alerts in a year without failures")
}

// TestBackgroundAlertOnly: with automatic renewal off, a certificate in
// its window is alerted, not renewed: once a day per host, from its
// window's start until it expires.
func TestBackgroundAlertOnly(t *testing.T) {
	const alert = 5 * 24 * time.Hour
	x := newSim(t, ca.Settings{Validity: 20 * 24 * time.Hour, ExpiryAlertPeriod: alert, DisableAutomaticRenewal: true}, 0, 3, 30*24*time.Hour, ca.BackgroundOptions{}, false)
	runUntil(t, x.bg, x.e.clock, x.end)

	alerts, at := x.alerts.list(ca.AlertExpiring)
	byHost := map[string][]time.Time{}
	for i, a := range alerts {
		require.NotNil(t, x.fleet.hosts[a.Host], "alert names a known host: %q", a.Host)
		assert.NoError(t, a.Err, "renewal off: nothing failed")
		byHost[a.Host] = append(byHost[a.Host], at[i])
	}
	for name, h := range x.fleet.hosts {
		assert.Empty(t, h.setups(), "%s: never renewed", name)
		times := byHost[name]
		c := h.current()
		require.NotEmpty(t, times, "%s: alerted", name)
		assert.WithinDuration(t, c.NotAfter.Add(-alert), times[0], 66*time.Minute, "%s: first alert at the window's start", name)
		for i := 1; i < len(times); i++ {
			assert.GreaterOrEqual(t, times[i].Sub(times[i-1]), 24*time.Hour, "%s: at most once a day", name)
			assert.Less(t, times[i].Sub(times[i-1]), 26*time.Hour+10*time.Minute, "%s: every day", name)
		}
		assert.Len(t, times, 5, "%s: one alert a day over a five-day window", name)
	}
}

// TestBackgroundRetriesWithBackoff: a host that fails three times is
// alerted each time, naming the host and the cause, and retried after
// one, two and four minutes; the fourth attempt renews it.
func TestBackgroundRetriesWithBackoff(t *testing.T) {
	x := newSim(t, ca.Settings{Validity: 30 * 24 * time.Hour, ExpiryAlertPeriod: 10 * 24 * time.Hour}, 0, 1, 30*24*time.Hour, ca.BackgroundOptions{}, false)
	var h *simHost
	for _, h = range x.fleet.hosts {
	}
	h.fails.Store(3)
	runUntil(t, x.bg, x.e.clock, x.end)

	failed, _ := x.alerts.list(ca.AlertRenewalFailed)
	require.Len(t, failed, 3)
	for _, a := range failed {
		assert.Equal(t, h.name, a.Host)
		assert.ErrorIs(t, a.Err, errHostDown, "the cause")
		var pe *ca.ProvisionError
		require.ErrorAs(t, a.Err, &pe)
		assert.Equal(t, ca.StepSetup, pe.Step)
		assert.Equal(t, provider.FormatSerial(h.installed()[0].SerialNumber), a.Serial)
	}
	starts := h.setups()
	require.Len(t, starts, 4, "three failures, then a success")
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute} {
		assert.Equal(t, want, starts[i+1].Sub(starts[i]), "retry %d", i+1)
	}
	assert.Len(t, h.installed(), 2, "renewed on the fourth attempt")
}

// TestBackgroundNoHostAlerts: a certificate the platform maps to no host
// is alerted with the reason, never dropped.
func TestBackgroundNoHostAlerts(t *testing.T) {
	x := newSim(t, ca.Settings{Validity: 30 * 24 * time.Hour, ExpiryAlertPeriod: 10 * 24 * time.Hour}, 0, 2, 25*24*time.Hour,
		ca.BackgroundOptions{HostFor: func(context.Context, *provider.CertificateRecord) (*ca.ProvisionRequest, error) { return nil, nil }}, false)
	runUntil(t, x.bg, x.e.clock, x.end)
	alerts, _ := x.alerts.list(ca.AlertExpiring)
	require.NotEmpty(t, alerts)
	hosts := map[string]bool{}
	for _, a := range alerts {
		hosts[a.Host] = true
		assert.ErrorContains(t, a.Err, "no host")
	}
	assert.Len(t, hosts, 2, "each host alerted under its DNS name")
}

// TestBackgroundCAExpiring: a CA that cannot cover a full-length leaf
// any more is alerted once a day; hosts whose renewal could not leave the
// window are alerted instead of renewed in a loop.
func TestBackgroundCAExpiring(t *testing.T) {
	caValid := 60 * 24 * time.Hour
	x := newSim(t, ca.Settings{Validity: 20 * 24 * time.Hour, ExpiryAlertPeriod: 5 * 24 * time.Hour}, caValid, 1, 59*24*time.Hour, ca.BackgroundOptions{}, false)
	runUntil(t, x.bg, x.e.clock, x.end)

	alerts, at := x.alerts.list(ca.AlertCAExpiring)
	require.NotEmpty(t, alerts)
	assert.Equal(t, provider.FormatSerial(x.e.caCert.SerialNumber), alerts[0].Serial)
	assert.WithinDuration(t, x.e.caCert.NotAfter.Add(-20*24*time.Hour), at[0], 66*time.Minute, "first alert when the CA has Settings.Validity left")
	for i := 1; i < len(at); i++ {
		assert.GreaterOrEqual(t, at[i].Sub(at[i-1]), 24*time.Hour, "at most once a day")
	}
	var h *simHost
	for _, h = range x.fleet.hosts {
	}
	assert.LessOrEqual(t, len(h.setups()), 4, "no renewal loop as the CA ends")
	expiring, _ := x.alerts.list(ca.AlertExpiring)
	require.NotEmpty(t, expiring, "the host is alerted when renewal cannot help")
	assert.ErrorContains(t, expiring[0].Err, "issuing CA ends")
}

// TestBackgroundRenewsManagementCertificate: the management server's
// certificate is renewed in place: the same Identity serves a new
// certificate, issued inside its window.
func TestBackgroundRenewsManagementCertificate(t *testing.T) {
	const alert = 5 * 24 * time.Hour
	e := newEnv(t, &envOptions{settings: ca.Settings{Validity: 20 * 24 * time.Hour, ExpiryAlertPeriod: alert}})
	e.clock.Set(simStart)
	id := e.identity(t)
	first := id.Certificate()
	end := simStart.Add(30 * 24 * time.Hour)
	var bg *ca.Background
	bg, err := e.m.NewBackground(&ca.BackgroundOptions{Identity: id, Sleep: simRun(t, &bg, e.clock, end, false)})
	require.NoError(t, err)
	runUntil(t, bg, e.clock, end)

	now := id.Certificate()
	assert.NotEqual(t, first.SerialNumber, now.SerialNumber, "renewed")
	assert.False(t, now.NotBefore.Before(first.NotAfter.Add(-alert-2*time.Hour)), "renewed inside the window")
	assert.True(t, now.NotBefore.Before(first.NotAfter), "renewed before it expired")
	served, err := id.GetCertificate(nil)
	require.NoError(t, err)
	assert.Equal(t, now.Raw, served.Leaf.Raw, "served in place")
}

// TestBackgroundLimits: when many renewals are due at once, no more than
// Concurrency run at a time and no more than RatePerSecond start in any
// second.
func TestBackgroundLimits(t *testing.T) {
	tests := []struct {
		name        string
		concurrency int
		rate        float64
		block       time.Duration
		concurrent  bool
	}{
		{name: "concurrency", concurrency: 3, rate: 1e6, block: 20 * time.Millisecond, concurrent: true},
		{name: "rate", concurrency: 8, rate: 2, concurrent: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const alert = 10 * 24 * time.Hour
			x := newSim(t, ca.Settings{Validity: 30 * 24 * time.Hour, ExpiryAlertPeriod: alert}, 0, 20, 29*24*time.Hour,
				ca.BackgroundOptions{Concurrency: tc.concurrency, RatePerSecond: tc.rate}, tc.concurrent)
			track := &inflight{}
			for _, h := range x.fleet.hosts {
				h.block, h.track = tc.block, track
			}
			// Every certificate is past its moment when the task starts.
			x.e.clock.Set(simStart.Add(30*24*time.Hour - alert/2 + time.Hour))
			runUntil(t, x.bg, x.e.clock, x.end)

			var starts []time.Time
			for name, h := range x.fleet.hosts {
				require.Len(t, h.installed(), 2, "%s renewed", name)
				starts = append(starts, h.setups()...)
			}
			if tc.concurrent {
				assert.Equal(t, int32(tc.concurrency), track.peak.Load(), "peak in flight")
				return
			}
			assert.LessOrEqual(t, track.peak.Load(), int32(tc.concurrency))
			for _, s := range starts {
				n := 0
				for _, u := range starts {
					if !u.Before(s) && u.Before(s.Add(time.Second)) {
						n++
					}
				}
				assert.LessOrEqual(t, n, int(tc.rate), "starts in the second from %s", s)
			}
		})
	}
}

// TestBackgroundNoInventory: a provider without an inventory is reported
// (errors.ErrUnsupported), not silently ignored.
func TestBackgroundNoInventory(t *testing.T) {
	e := newEnv(t, &envOptions{settings: ca.Settings{Provider: "bare"}})
	bg, err := e.m.NewBackground(nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = bg.Run(ctx)
	require.ErrorIs(t, err, errors.ErrUnsupported)
	assert.ErrorContains(t, err, "ca: background task")
}

// TestBackgroundBusyHostRetriedQuietly: a renewal that finds its host
// being provisioned by another call (an administrator's, say) is tried
// again after the backoff without an alert, and then renews.
func TestBackgroundBusyHostRetriedQuietly(t *testing.T) {
	var x *sim
	var calls int
	var blocker *blockingHost
	var blocked chan error
	hostFor := func(ctx context.Context, rec *provider.CertificateRecord) (*ca.ProvisionRequest, error) {
		req, err := x.fleet.hostFor(ctx, rec)
		if req == nil || err != nil {
			return req, err
		}
		calls++
		switch calls {
		case 1: // someone else starts provisioning this host, and holds it
			blocker = &blockingHost{recordingHost: newRecordingHost(t), entered: make(chan struct{}), release: make(chan struct{})}
			blocked = make(chan error, 1)
			go func() {
				_, err := x.e.m.Provision(context.Background(), &ca.ProvisionRequest{Name: req.Name, Host: blocker, DNSNames: req.DNSNames})
				blocked <- err
			}()
			<-blocker.entered
		case 2: // ... and is done by the retry
			close(blocker.release)
			require.NoError(t, <-blocked)
		}
		return req, nil
	}
	x = newSim(t, ca.Settings{Validity: 20 * 24 * time.Hour, ExpiryAlertPeriod: 5 * 24 * time.Hour}, 0, 1, 30*24*time.Hour,
		ca.BackgroundOptions{HostFor: hostFor}, false)
	runUntil(t, x.bg, x.e.clock, x.end)

	assert.GreaterOrEqual(t, calls, 2, "the busy renewal was tried again")
	failed, _ := x.alerts.list(ca.AlertRenewalFailed)
	assert.Empty(t, failed, "a busy host is no failure")
	for name, h := range x.fleet.hosts {
		assert.NotEmpty(t, h.setups(), "%s: renewed after the retry", name)
	}
}

// TestBackgroundRetryDropsReplacedCertificate: a renewal that failed is
// not tried again once its certificate has been replaced and revoked
// meanwhile (an administrator provisioned the host): the retry would
// renew a host just renewed, or alert about a certificate nobody uses.
func TestBackgroundRetryDropsReplacedCertificate(t *testing.T) {
	var x *sim
	var old *big.Int
	oldCalls := 0
	hostFor := func(ctx context.Context, rec *provider.CertificateRecord) (*ca.ProvisionRequest, error) {
		req, err := x.fleet.hostFor(ctx, rec)
		if req == nil || err != nil {
			return req, err
		}
		if old == nil {
			old = rec.Serial
		}
		if rec.Serial.Cmp(old) != 0 {
			return req, nil
		}
		oldCalls++
		if oldCalls == 1 {
			// Meanwhile an administrator provisions the host, which
			// replaces and revokes this certificate; this renewal fails.
			_, err := x.e.m.Provision(ctx, req)
			require.NoError(t, err)
			require.NoError(t, x.e.m.Revoke(ctx, &ca.RevokeRequest{Serial: provider.FormatSerial(rec.Serial), Reason: provider.ReasonSuperseded}))
			failing := newRecordingHost(t)
			failing.failAt = ca.StepSetup
			return &ca.ProvisionRequest{Name: req.Name, Host: failing, DNSNames: req.DNSNames}, nil
		}
		return req, nil
	}
	x = newSim(t, ca.Settings{Validity: 20 * 24 * time.Hour, ExpiryAlertPeriod: 5 * 24 * time.Hour}, 0, 1, 30*24*time.Hour,
		ca.BackgroundOptions{HostFor: hostFor}, false)
	runUntil(t, x.bg, x.e.clock, x.end)

	require.NotNil(t, old)
	assert.Equal(t, 1, oldCalls, "the replaced certificate's renewal is not tried again")
	expiring, _ := x.alerts.list(ca.AlertExpiring)
	for _, a := range expiring {
		assert.NotEqual(t, provider.FormatSerial(old), a.Serial, "no alert about the replaced certificate")
	}
}
