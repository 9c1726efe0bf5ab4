package ca

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kvmpki/kvmpki/provider"
)

// RotateOptions configures [Manager.Rotate]. The zero value is not
// usable: HostFor is required.
type RotateOptions struct {
	// HostFor maps a certificate, as the provider's inventory records
	// it, to the host that holds it (as BackgroundOptions.HostFor does):
	// a certificate of the previous CA for re-provisioning through
	// [Manager.Provision], and after retirement a certificate of the new
	// CA for the final bundle push. A nil request with a nil error means
	// the platform knows no host for it: a previous-CA certificate is
	// then reported as left behind, and keeps the previous CA from being
	// retired unless Force. An error is that host's failure. Required.
	HostFor func(ctx context.Context, rec *provider.CertificateRecord) (*ProvisionRequest, error)

	// Concurrency bounds the hosts provisioned at once. If zero, 4.
	Concurrency int

	// RatePerSecond bounds how many hosts start provisioning per second.
	// If zero, 10.
	RatePerSecond float64

	// Force retires the previous CA at the end even though some of its
	// certificates are still unexpired and unrevoked (hosts that failed
	// or that HostFor does not know): their hosts cannot connect until
	// they get a certificate from the new CA. The zero value never
	// retires a CA whose certificates are in use.
	Force bool

	// Progress, if set, receives every step of the rotation, one at a
	// time; it should not block for long. Steps are logged through
	// Settings.Logger as well.
	Progress func(RotationProgress)

	// Driver names this driver in the rotation lease, as the
	// ErrRotationBusy another driver gets reports it: a management
	// server's name, say. If empty, the host name and process ID. A
	// random suffix is always added, so that no two Rotate calls share
	// a lease.
	Driver string

	// Lease is how long the lease on driving the rotation lasts unless
	// renewed. Rotate renews it every third of Lease while it works, and
	// stops (its error matching ErrRotationBusy) when it has not renewed
	// it before it expires, counted on this process's clock from the
	// start of the last successful claim, even while a renewal hangs; a
	// driver that crashed holds the rotation up for at most Lease. It must exceed the clock skew between management
	// servers. If zero, one minute.
	Lease time.Duration
}

const (
	// defaultRotationLease is RotateOptions.Lease's default.
	defaultRotationLease = time.Minute
	// releaseTimeout bounds the release of the lease when Rotate
	// returns (its context may be done by then); a lease not released
	// expires by itself.
	releaseTimeout = 10 * time.Second
)

// ErrRotationBusy is matched by the error Rotate returns when another
// driver (another Rotate call, in this process or another management
// server on the same database) holds the lease on driving the rotation:
// a *provider.RotationBusyError names it and until when. It is
// provider.ErrRotationBusy.
var ErrRotationBusy = provider.ErrRotationBusy

// RotationPhase names a step of a rotation, for [RotationProgress].
type RotationPhase string

// The steps of a rotation.
const (
	// PhaseBegun: a successor CA was made; it issues from now on.
	PhaseBegun RotationPhase = "begun"
	// PhaseResumed: a rotation in progress (begun by this or another
	// management server, before a restart perhaps) is continued.
	PhaseResumed RotationPhase = "resumed"
	// PhaseHostDone: a host has a certificate from the new CA and the
	// bundle of both CAs; its previous certificate is revoked
	// (superseded).
	PhaseHostDone RotationPhase = "host done"
	// PhaseHostFailed: a host could not be re-provisioned (Err says why).
	PhaseHostFailed RotationPhase = "host failed"
	// PhaseHostSkipped: a certificate was left alone: no host known for
	// it, another driver in this process is provisioning it, or it
	// stopped being valid meanwhile (Err says which).
	PhaseHostSkipped RotationPhase = "host skipped"
	// PhaseRetired: the previous CA was retired.
	PhaseRetired RotationPhase = "retired"
	// PhaseBundlePushed: after retirement, a host installed the bundle
	// without the previous CA (with its current certificate) and
	// reloaded.
	PhaseBundlePushed RotationPhase = "bundle pushed"
	// PhaseBundleFailed: that push failed on a host (Err says why).
	PhaseBundleFailed RotationPhase = "bundle push failed"
	// PhaseDone: the bundle without the previous CA reached every host
	// (or Force forgave the failures): the rotation is over, and the
	// next Rotate begins a new one.
	PhaseDone RotationPhase = "done"
)

// RotationProgress is one step of a rotation.
type RotationProgress struct {
	Phase RotationPhase
	// Host and Serial name the host and the previous-CA certificate of
	// a host step.
	Host   string
	Serial string
	// Done and Total count the hosts re-provisioned in this run, and the
	// previous CA's certificates found at its start.
	Done, Total int
	Err         error
}

// RotationResult reports what [Manager.Rotate] did.
type RotationResult struct {
	// Begun is set when this run made the successor CA; false when it
	// resumed a rotation in progress.
	Begun bool
	// Provisioned are the hosts re-provisioned in this run.
	Provisioned []string
	// Failed are the hosts whose re-provisioning failed, with the
	// cause.
	Failed map[string]error
	// Skipped are the previous CA's certificates (by serial) left
	// alone, with the reason.
	Skipped map[string]error
	// Retired is set when the previous CA was retired.
	Retired bool
	// BundlePushed are the hosts that installed the bundle without the
	// previous CA after its retirement; BundleFailed those whose push
	// failed, with the cause.
	BundlePushed []string
	BundleFailed map[string]error
	// Finished is set when the rotation is over: the previous CA is
	// retired and the bundle without it was pushed to every host (or
	// Force forgave the failures). Then the next Rotate begins a new
	// rotation; otherwise it resumes this one.
	Finished bool
}

// ErrRotationIncomplete is matched by the error Rotate returns when it
// stopped before the rotation was over: it did not retire the previous
// CA because hosts failed or certificates of that CA remain, or it
// retired it but did not push the bundle without it to every host, or
// it was stopped (ctx, or a lost lease). Run Rotate again once the hosts
// are fixed (it resumes), or with Force.
var ErrRotationIncomplete = errors.New("ca: CA rotation incomplete")

// Rotate drives a CA rotation end to end through the provider's
// [provider.Rotator] capability (a provider without it, or without an
// inventory, gives an error matching errors.ErrUnsupported):
//
//  0. It claims the lease on driving the rotation
//     ([provider.RotationLeaser], kept in the provider's store), so that
//     one driver works at a time, across management servers sharing
//     the database as well: while another holds it, Rotate returns at
//     once an error matching [ErrRotationBusy] (a
//     *provider.RotationBusyError naming the holder and until when),
//     having changed nothing. It renews the lease every third of
//     RotateOptions.Lease while it works, and releases it when it
//     returns; a driver that crashed loses it when it expires, and the
//     next Rotate resumes. A driver whose lease expires unrenewed (its
//     renewals failing or hanging, or the process paused) stops then:
//     its context is cancelled, and a stalled process does not renew
//     after its lease expired. The host step it was in may
//     then overlap with the next driver's, which re-reads each
//     certificate before provisioning its host, so at worst one host is
//     provisioned twice, which is harmless (it ends with a valid
//     certificate of the new CA).
//  1. It begins a rotation (the provider makes a successor CA that
//     issues from then on, and both CAs are in the bundle), or continues
//     the one in progress: the state lives in the provider's store, so a
//     restarted management server, or another one sharing the database,
//     resumes where the rotation stands.
//  2. It re-provisions, through [Manager.Provision], every host whose
//     certificate in the provider's inventory still comes from a
//     previous CA (unexpired, valid), rate- and concurrency-limited:
//     each gets a certificate from the new CA and the bundle of both,
//     and its previous certificate is revoked (superseded) once it has
//     installed the new one and reloaded. Hosts done before a restart
//     hold no valid previous-CA certificate any more, so they are not
//     provisioned again.
//  3. When no host failed and no certificate of the previous CA is left
//     (or opts.Force), it records in the store that the bundle push is
//     owed (RotationStatus.PushPending), then retires the previous CA:
//     it leaves the bundle the manager serves, and the provider refuses
//     its certificates.
//  4. It pushes the bundle without the previous CA to every host
//     holding a certificate of the new CA (its certificate installed
//     again with that bundle, then a reload), with the same limits, so
//     that the hosts refuse the previous CA's certificates too. Once
//     every host has it (or opts.Force forgives the failures), it
//     clears PushPending: the rotation is over (RotationResult.Finished),
//     and the next Rotate begins a new one. Until then the next Rotate,
//     in any process, pushes the bundle again to every host instead.
//
// When it stops short (hosts failed, certificates of the previous CA
// remain, the push failed on some hosts, ctx was cancelled or the lease
// lost), Rotate returns the result with an error matching
// [ErrRotationIncomplete] naming the failed hosts.
//
// With a provider that is a Rotator but keeps no lease (the store of a
// rootca CA that is not a rootca.RotationLeaseStore), Rotate runs
// without one, as before it had leases: two Rotate calls in one process
// still never provision the same certificate's host at once, but two
// processes may, and nothing records the push after a retirement, so a
// push that stops or fails is not resumed (hosts get the bundle at their
// next provisioning) and the next Rotate begins a new rotation.
func (m *Manager) Rotate(ctx context.Context, opts *RotateOptions) (*RotationResult, error) {
	if opts == nil || opts.HostFor == nil {
		return nil, &provider.RequestError{Field: "HostFor", Reason: "Rotate needs RotateOptions.HostFor"}
	}
	switch {
	case opts.Concurrency < 0:
		return nil, errors.New("ca: RotateOptions.Concurrency is negative")
	case opts.RatePerSecond < 0:
		return nil, errors.New("ca: RotateOptions.RatePerSecond is negative")
	}
	if opts.Lease < 0 {
		return nil, errors.New("ca: RotateOptions.Lease is negative")
	}
	r := &rotation{m: m, o: opts, res: &RotationResult{Failed: map[string]error{}, Skipped: map[string]error{}, BundleFailed: map[string]error{}}}
	return r.res, r.run(ctx)
}

// rotation is one run of Rotate.
type rotation struct {
	m   *Manager
	o   *RotateOptions
	res *RotationResult

	mu          sync.Mutex // guards res, done, and one Progress call at a time
	done, total int

	holder string // the lease's holder; empty without a lease
}

func (r *rotation) run(ctx context.Context) (err error) {
	var p provider.Provider
	if err := r.m.with(func(h *handle) error { p = h.p; return nil }); err != nil {
		return err
	}
	if _, ok := p.(provider.Rotator); !ok {
		_, err := provider.Rotation(ctx, p)
		return fmt.Errorf("ca: rotation: %w", err)
	}
	if _, ok := p.(provider.Inventory); !ok {
		return fmt.Errorf("ca: rotation: provider %s has no inventory: %w", p.Name(), errors.ErrUnsupported)
	}
	ctx, release, err := r.claim(ctx, p)
	if err != nil {
		return err
	}
	defer release()
	defer func() {
		// Whatever step was cut short by ctx, or by the lease's loss,
		// says so.
		if err == nil || ctx.Err() == nil {
			return
		}
		if cause := context.Cause(ctx); !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
		if !errors.Is(err, ErrRotationIncomplete) {
			err = fmt.Errorf("%w: %w", ErrRotationIncomplete, err)
		}
	}()
	st, err := provider.Rotation(ctx, p)
	if err != nil {
		return fmt.Errorf("ca: rotation: %w", err)
	}
	if !st.InProgress() && st.PushPending && r.holder != "" {
		// A driver stopped between the retirement and the end of the
		// push: finish it.
		r.report(RotationProgress{Phase: PhaseResumed})
		if err := r.refreshBundle(ctx); err != nil {
			return r.pushStopped(ctx, err)
		}
		return r.pushBundle(ctx, p, st.Issuing())
	}
	if !st.InProgress() {
		err := provider.BeginRotation(ctx, p)
		switch {
		case err == nil:
			r.res.Begun = true
		case errors.Is(err, provider.ErrRotationInProgress):
			// Begun by a driver without the lease (or a provider
			// without leases): continue it.
		default:
			return fmt.Errorf("ca: begin rotation: %w", err)
		}
		if st, err = provider.Rotation(ctx, p); err != nil {
			return fmt.Errorf("ca: rotation: %w", err)
		}
	}
	if err := r.refreshBundle(ctx); err != nil {
		return err
	}
	prev := st.Previous()
	recs, err := r.previousLeaves(ctx, p, prev)
	if err != nil {
		return err
	}
	r.total = len(recs)
	phase := PhaseResumed
	if r.res.Begun {
		phase = PhaseBegun
	}
	r.report(RotationProgress{Phase: phase, Total: r.total})

	r.provisionAll(ctx, p, recs)
	if ctx.Err() != nil {
		return fmt.Errorf("%w: stopped after %d of %d hosts: %w", ErrRotationIncomplete, r.done, r.total, context.Cause(ctx))
	}
	if len(r.res.Failed) > 0 && !r.o.Force {
		return fmt.Errorf("%w: previous CA kept: %d hosts failed: %s", ErrRotationIncomplete, len(r.res.Failed), failedNames(r.res.Failed))
	}
	if len(prev) == 0 {
		return nil // retired meanwhile by a driver without the lease
	}
	// The push is recorded as owed before the retirement, so that the
	// record is never behind it: a driver stopping in between leaves a
	// rotation still in progress, which the next one resumes anyway.
	if err := r.setPushPending(ctx, p, true); err != nil {
		return err
	}
	err = provider.RetirePrevious(ctx, p, r.o.Force)
	switch {
	case errors.Is(err, provider.ErrNotRetirable):
		// Retired by someone without the lease (kvmpki-ca rotate
		// retire): the hosts still need the bundle without it.
	case errors.Is(err, provider.ErrLeavesRemain):
		// Nothing was retired, so no push is owed.
		if perr := r.setPushPending(ctx, p, false); perr != nil {
			r.m.s.logger.Warn("ca: CA rotation", "error", perr)
		}
		return fmt.Errorf("%w: previous CA kept: %w", ErrRotationIncomplete, err)
	case err != nil:
		return fmt.Errorf("ca: retire previous CA: %w", err)
	default:
		r.res.Retired = true
		r.report(RotationProgress{Phase: PhaseRetired, Done: r.done, Total: r.total})
	}
	if err := r.refreshBundle(ctx); err != nil {
		return r.pushStopped(ctx, err)
	}
	return r.pushBundle(ctx, p, st.Issuing())
}

// pushStopped is the error of a bundle push that stopped on err before
// reaching every host: with a lease, the push stays recorded as owed, so
// the error matches ErrRotationIncomplete (and the lease's loss, if that
// stopped it).
func (r *rotation) pushStopped(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	if r.holder == "" {
		return fmt.Errorf("ca: previous CA retired; pushing the new bundle stopped: %w", err)
	}
	return fmt.Errorf("%w: previous CA retired; pushing the new bundle stopped (the next Rotate pushes it): %w", ErrRotationIncomplete, err)
}

// claim claims the rotation lease and keeps renewing it until the
// returned release is called, which releases it. The returned context
// is cancelled when the lease is lost (its cause matches
// ErrRotationBusy). A provider that keeps no lease gives ctx back and a
// release that does nothing.
func (r *rotation) claim(ctx context.Context, p provider.Provider) (context.Context, func(), error) {
	holder, err := driverName(r.o.Driver)
	if err != nil {
		return nil, nil, err
	}
	ttl := r.o.Lease
	if ttl == 0 {
		ttl = defaultRotationLease
	}
	// The lease runs from no earlier than the claim's start: this
	// process counts it from there on its own (monotonic) clock.
	claimed := time.Now()
	err = provider.ClaimRotation(ctx, p, holder, ttl)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		r.m.s.logger.Warn("ca: CA rotation without a lease: the provider keeps none, so another management server may drive it at the same time",
			"provider", p.Name(), "error", err)
		return ctx, func() {}, nil
	case err != nil:
		return nil, nil, fmt.Errorf("ca: rotation: %w", err)
	}
	r.holder = holder
	r.m.s.logger.Info("ca: CA rotation lease claimed", "holder", holder, "lease", ttl)
	work, cancel := context.WithCancelCause(ctx)
	// The watchdog stops the work when the lease expires unrenewed,
	// whatever the renewal is doing (a store that stopped answering
	// holds it in ClaimRotation).
	expires := claimed.Add(ttl)
	watchdog := time.AfterFunc(time.Until(expires), func() { cancel(errLeaseExpired) })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { r.renew(work, p, ttl, expires, watchdog, cancel, stop) })
	return work, func() {
		close(stop)
		watchdog.Stop()
		cancel(nil) // cuts a renewal in flight short
		wg.Wait()
		rctx, done := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer done()
		if err := provider.ReleaseRotation(rctx, p, holder); err != nil {
			r.m.s.logger.Warn("ca: CA rotation lease not released (it expires by itself)", "holder", holder, "error", err)
		}
	}, nil
}

// errLeaseExpired is the cause of a rotation stopped because its lease
// expired, as this process counts it, before a renewal succeeded.
var errLeaseExpired = fmt.Errorf("ca: CA rotation lease expired before it was renewed: %w", provider.ErrRotationBusy)

// renew renews the lease, which expires at expires unless renewed,
// every third of ttl until stop is closed or ctx done; each renewal
// moves expires, and watchdog (which cancels ctx when it fires) with
// it. When another driver holds the lease, or renewals keep failing
// until less than a third of it is left, or the lease expired before a
// renewal began (the process stalled), it cancels ctx: the work stops
// before another driver may take over. A renewal is given until the
// lease expires, no longer.
func (r *rotation) renew(ctx context.Context, p provider.Provider, ttl time.Duration, expires time.Time, watchdog *time.Timer,
	cancel context.CancelCauseFunc, stop <-chan struct{}) {
	every := max(ttl/3, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		if !start.Before(expires) {
			// Another driver may have taken it over and given it back
			// meanwhile: a renewal would hide that.
			cancel(errLeaseExpired)
			return
		}
		cctx, done := context.WithDeadline(ctx, expires)
		err := provider.ClaimRotation(cctx, p, r.holder, ttl)
		done()
		switch {
		case err == nil:
			expires = start.Add(ttl)
			if !watchdog.Stop() {
				return // it fired: the work is stopped
			}
			watchdog.Reset(time.Until(expires))
		case errors.Is(err, provider.ErrRotationBusy):
			cancel(fmt.Errorf("ca: CA rotation lease lost: %w", err))
			return
		case ctx.Err() != nil:
			return
		default:
			r.m.s.logger.Warn("ca: CA rotation lease not renewed", "holder", r.holder, "error", err)
			if time.Until(expires) < every {
				cancel(fmt.Errorf("ca: CA rotation lease not renewed before it expires: %w: %w", provider.ErrRotationBusy, err))
				return
			}
		}
	}
}

// driverName returns the lease holder name of a Rotate call: name, or
// the host name and process ID, and a random suffix.
func driverName(name string) (string, error) {
	if name == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "unknown host"
		}
		name = fmt.Sprintf("%s pid %d", host, os.Getpid())
	}
	// Room for the suffix within the 255 bytes a lease holder may have.
	for len(name) > 200 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("ca: rotation: %w", err)
	}
	return name + " " + hex.EncodeToString(b[:]), nil
}

// setPushPending records whether the push is owed, under the lease.
func (r *rotation) setPushPending(ctx context.Context, p provider.Provider, pending bool) error {
	if r.holder == "" {
		return nil
	}
	if err := provider.SetRotationPushPending(ctx, p, r.holder, pending); err != nil {
		// The rotation stops short here (the lease lost, say): it is
		// incomplete, and the next Rotate resumes it.
		return fmt.Errorf("%w: record the bundle push: %w", ErrRotationIncomplete, err)
	}
	return nil
}

// pushBundle gives every host holding a valid certificate of the issuing
// CA the bundle without the retired CA, with its current certificate,
// and reloads it; then, unless hosts failed (or Force), it records the
// push done. A failure is returned naming the hosts, matching
// ErrRotationIncomplete when the push stays recorded as owed (the next
// Rotate pushes again).
func (r *rotation) pushBundle(ctx context.Context, p provider.Provider, issuing *provider.RotationAuthority) error {
	if issuing == nil {
		return r.pushStopped(ctx, errors.New("ca: rotation: the provider reports no issuing CA"))
	}
	recs, err := r.previousLeaves(ctx, p, []provider.RotationAuthority{*issuing})
	if err != nil {
		return r.pushStopped(ctx, err)
	}
	bundle, err := r.m.CABundle(ctx)
	if err != nil {
		return r.pushStopped(ctx, err)
	}
	cas, err := r.m.CACertificates(ctx)
	if err != nil {
		return r.pushStopped(ctx, err)
	}
	// The issuing chain up to its root; the root itself is not sent.
	chain := cas
	for i, c := range cas {
		if string(c.RawIssuer) == string(c.RawSubject) {
			chain = cas[:i+1]
			break
		}
	}
	chain = intermediates(chain)
	r.forEach(ctx, recs, func(rec *provider.CertificateRecord) {
		name, err := r.pushOne(ctx, rec, bundle, chain)
		if name == "" {
			return // no host known for it
		}
		r.mu.Lock()
		if err != nil {
			r.res.BundleFailed[name] = err
		} else {
			r.res.BundlePushed = append(r.res.BundlePushed, name)
		}
		r.mu.Unlock()
		if err != nil {
			r.report(RotationProgress{Phase: PhaseBundleFailed, Host: name, Serial: provider.FormatSerial(rec.Serial), Err: err})
		} else {
			r.report(RotationProgress{Phase: PhaseBundlePushed, Host: name, Serial: provider.FormatSerial(rec.Serial)})
		}
	})
	if ctx.Err() != nil {
		return r.pushStopped(ctx, context.Cause(ctx))
	}
	if len(r.res.BundleFailed) > 0 && !r.o.Force {
		if r.holder == "" {
			return fmt.Errorf("ca: previous CA retired, but pushing the new bundle failed on %d hosts (they get it at their next provisioning): %s",
				len(r.res.BundleFailed), failedNames(r.res.BundleFailed))
		}
		return fmt.Errorf("%w: previous CA retired, but pushing the new bundle failed on %d hosts (the next Rotate pushes it again, or Force): %s",
			ErrRotationIncomplete, len(r.res.BundleFailed), failedNames(r.res.BundleFailed))
	}
	if err := r.setPushPending(ctx, p, false); err != nil {
		return err
	}
	r.mu.Lock()
	r.res.Finished = true
	r.mu.Unlock()
	r.report(RotationProgress{Phase: PhaseDone})
	return nil
}

// pushOne installs bundle with rec's certificate on rec's host and
// reloads it. It returns "" when HostFor knows no host for rec.
func (r *rotation) pushOne(ctx context.Context, rec *provider.CertificateRecord, bundle []byte, chain []*x509.Certificate) (string, error) {
	req, err := r.o.HostFor(ctx, rec)
	switch {
	case err != nil:
		return recordName(rec), err
	case req == nil || req.Host == nil:
		return "", nil
	}
	leaf, err := x509.ParseCertificate(rec.Raw)
	if err != nil {
		return req.Name, err
	}
	install := &CertificateInstall{
		CertificatePEM: provider.EncodeCertificates(append([]*x509.Certificate{leaf}, chain...)...),
		CABundlePEM:    bundle,
		Serial:         provider.FormatSerial(rec.Serial),
	}
	if err := req.Host.InstallCertificate(ctx, install); err != nil {
		return req.Name, &ProvisionError{Host: req.Name, Step: StepInstall, Err: err}
	}
	if err := req.Host.Reload(ctx); err != nil {
		return req.Name, &ProvisionError{Host: req.Name, Step: StepReload, Err: err}
	}
	return req.Name, nil
}

// refreshBundle makes the manager serve the provider's CA certificates
// as they are now, not as cached.
func (r *rotation) refreshBundle(ctx context.Context) error {
	return r.m.with(func(h *handle) error {
		_, err := h.caCerts(ctx, true)
		return err
	})
}

// previousLeaves lists the inventory's valid, unexpired certificates
// issued by one of prev.
func (r *rotation) previousLeaves(ctx context.Context, p provider.Provider, prev []provider.RotationAuthority) ([]*provider.CertificateRecord, error) {
	if len(prev) == 0 {
		return nil, nil
	}
	valid := provider.StatusValid
	recs, err := provider.ListCertificates(ctx, p, &provider.ListOptions{Status: &valid})
	if err != nil {
		return nil, fmt.Errorf("ca: rotation: list certificates: %w", err)
	}
	now := r.m.s.now()
	var out []*provider.CertificateRecord
	for _, rec := range recs {
		if rec.Serial == nil || rec.Status != provider.StatusValid || !rec.NotAfter.After(now) {
			continue
		}
		if issuedByAny(rec, prev) {
			out = append(out, rec)
		}
	}
	return out, nil
}

// issuedByAny reports whether rec's certificate was issued by one of
// cas: its issuer is the CA's subject and its authority key identifier
// the CA's key identifier.
func issuedByAny(rec *provider.CertificateRecord, cas []provider.RotationAuthority) bool {
	leaf, err := x509.ParseCertificate(rec.Raw)
	if err != nil {
		return false
	}
	for _, a := range cas {
		c := a.Certificate
		if c != nil && bytes.Equal(leaf.RawIssuer, c.RawSubject) && bytes.Equal(leaf.AuthorityKeyId, c.SubjectKeyId) {
			return true
		}
	}
	return false
}

// provisionAll re-provisions the hosts of recs.
func (r *rotation) provisionAll(ctx context.Context, p provider.Provider, recs []*provider.CertificateRecord) {
	r.forEach(ctx, recs, func(rec *provider.CertificateRecord) { r.provisionOne(ctx, p, rec) })
}

// forEach runs fn for each of recs, at most Concurrency at once and
// RatePerSecond starts per second, until ctx is done.
func (r *rotation) forEach(ctx context.Context, recs []*provider.CertificateRecord, fn func(*provider.CertificateRecord)) {
	sem := make(chan struct{}, orDefault(r.o.Concurrency, defaultRenewalConcurrency))
	gap := time.Duration(float64(time.Second) / orDefault(r.o.RatePerSecond, defaultRenewalRate))
	var wg sync.WaitGroup
	defer wg.Wait()
	var next time.Time
	for _, rec := range recs {
		if d := time.Until(next); d > 0 {
			if timerSleep(ctx, d) != nil {
				return
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		next = time.Now().Add(gap)
		wg.Go(func() {
			defer func() { <-sem }()
			fn(rec)
		})
	}
}

// inFlight holds the certificates (by provider and serial) whose hosts a
// rotation in this process is provisioning.
var inFlight sync.Map

// provisionOne re-provisions the host of rec and revokes rec.
func (r *rotation) provisionOne(ctx context.Context, p provider.Provider, rec *provider.CertificateRecord) {
	serial := provider.FormatSerial(rec.Serial)
	key := p.Name() + "/" + serial
	if _, busy := inFlight.LoadOrStore(key, struct{}{}); busy {
		r.skip(serial, errors.New("another rotation in this process is provisioning its host"))
		return
	}
	defer inFlight.Delete(key)
	// Another management server may have replaced it meanwhile.
	if cur, err := provider.LookupCertificate(ctx, p, rec.Serial); err == nil && cur.Status != provider.StatusValid {
		r.skip(serial, fmt.Errorf("no longer valid (%s)", cur.Status))
		return
	}
	req, err := r.o.HostFor(ctx, rec)
	if err == nil && req == nil {
		r.skip(serial, errNoHost)
		return
	}
	name := recordName(rec)
	var res *ProvisionResult
	if err == nil {
		name = req.Name
		res, err = r.m.Provision(ctx, req)
	}
	if err != nil {
		if res != nil {
			err = fmt.Errorf("installed but not reloaded, previous certificate kept: %w", err)
		}
		r.mu.Lock()
		r.res.Failed[name] = err
		r.mu.Unlock()
		r.report(RotationProgress{Phase: PhaseHostFailed, Host: name, Serial: serial, Err: err})
		return
	}
	revoke := &provider.RevokeRequest{Serial: rec.Serial, Reason: provider.ReasonSuperseded}
	if c, perr := x509.ParseCertificate(rec.Raw); perr == nil {
		revoke.Certificate = c
	}
	if err := p.Revoke(ctx, revoke); err != nil && !errors.Is(err, provider.ErrAlreadyRevoked) {
		err = fmt.Errorf("provisioned, but revoking its previous certificate failed: %w", err)
		r.mu.Lock()
		r.res.Failed[name] = err
		r.mu.Unlock()
		r.report(RotationProgress{Phase: PhaseHostFailed, Host: name, Serial: serial, Err: err})
		return
	}
	r.mu.Lock()
	r.res.Provisioned = append(r.res.Provisioned, name)
	r.done++
	r.mu.Unlock()
	r.report(RotationProgress{Phase: PhaseHostDone, Host: name, Serial: serial})
}

func (r *rotation) skip(serial string, why error) {
	r.mu.Lock()
	r.res.Skipped[serial] = why
	r.mu.Unlock()
	r.report(RotationProgress{Phase: PhaseHostSkipped, Serial: serial, Err: why})
}

// report logs p and hands it to the platform, one at a time.
func (r *rotation) report(p RotationProgress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.Done, p.Total = r.done, r.total
	attrs := []any{"phase", string(p.Phase), "done", p.Done, "total", p.Total}
	if p.Host != "" {
		attrs = append(attrs, "host", p.Host)
	}
	if p.Serial != "" {
		attrs = append(attrs, "serial", p.Serial)
	}
	if p.Err != nil {
		r.m.s.logger.Warn("ca: CA rotation", append(attrs, "error", p.Err)...)
	} else {
		r.m.s.logger.Info("ca: CA rotation", attrs...)
	}
	if r.o.Progress != nil {
		r.o.Progress(p)
	}
}

func failedNames(failed map[string]error) string {
	names := make([]string, 0, len(failed))
	for n, err := range failed {
		names = append(names, n+" ("+err.Error()+")")
	}
	slices.Sort(names)
	if len(names) > 5 {
		names = append(names[:5], "...")
	}
	return strings.Join(names, ", ")
}
