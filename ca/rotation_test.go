package ca_test

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/postgres"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// rotHost is a Host for rotation tests: safe for concurrent use, it
// records every install and fails installs while fail is set.
type rotHost struct {
	name string
	key  *ecdsa.PrivateKey

	mu       sync.Mutex
	delay    time.Duration // each install takes this long; 1 ms if zero
	fail     bool
	maxOK    int // if positive, installs fail once this many succeeded
	installs []*ca.CertificateInstall
	setups   int  // keystore setups: provisionings
	busy     bool // an install is running
	overlap  bool // two installs ran at once
}

func (h *rotHost) SetupKeystore(ctx context.Context, req *ca.KeystoreSetup) ([]byte, error) {
	h.mu.Lock()
	h.setups++
	h.mu.Unlock()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: h.name}, DNSNames: req.DNSNames}, h.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func (h *rotHost) InstallCertificate(ctx context.Context, c *ca.CertificateInstall) error {
	h.mu.Lock()
	if h.fail || (h.maxOK > 0 && len(h.installs) >= h.maxOK) {
		h.mu.Unlock()
		return errHostStep
	}
	if h.busy {
		h.overlap = true
	}
	h.busy = true
	delay := cmp.Or(h.delay, time.Millisecond) // widen the window two drivers could share
	h.mu.Unlock()
	time.Sleep(delay)
	h.mu.Lock()
	h.busy = false
	h.installs = append(h.installs, c)
	h.mu.Unlock()
	return nil
}

func (h *rotHost) Reload(ctx context.Context) error { return nil }

func (h *rotHost) installCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.installs)
}

func (h *rotHost) setupCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.setups
}

func (h *rotHost) last(t *testing.T) (*x509.Certificate, []*x509.Certificate) {
	t.Helper()
	return h.install(t, -1)
}

// install returns the certificate and bundle of install i (negative
// from the end).
func (h *rotHost) install(t *testing.T, i int) (*x509.Certificate, []*x509.Certificate) {
	t.Helper()
	h.mu.Lock()
	if i < 0 {
		i += len(h.installs)
	}
	require.Less(t, i, len(h.installs))
	in := h.installs[i]
	h.mu.Unlock()
	certs, bundle := pemCerts(t, in.CertificatePEM), pemCerts(t, in.CABundlePEM)
	require.NotEmpty(t, certs)
	return certs[0], bundle
}

func pemCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		out = append(out, c)
	}
}

// rotationBackend opens the store a management server uses; each call is
// a new server's connection to the same database.
type rotationBackend struct {
	name string
	open func(t *testing.T) rootca.Store
}

func rotationBackends(t *testing.T) []rotationBackend {
	return []rotationBackend{
		{"memory", func() func(t *testing.T) rootca.Store {
			s := rootca.NewMemStore()
			return func(*testing.T) rootca.Store { return s }
		}()},
		{"sqlite", func() func(t *testing.T) rootca.Store {
			path := filepath.Join(t.TempDir(), "ca.db")
			return func(t *testing.T) rootca.Store {
				s, err := sqlite.Open(context.Background(), path)
				require.NoError(t, err)
				t.Cleanup(func() { s.Close() })
				return s
			}
		}()},
	}
}

// postgresBackend is a PostgreSQL database (peers.PostgresDatabase,
// created on first use: a test without KVMPKI_TEST_POSTGRES_URL skips
// there); each open is another management server's connection to it.
func postgresBackend() rotationBackend {
	var url string
	return rotationBackend{"postgresql", func(t *testing.T) rootca.Store {
		if url == "" {
			url = peers.PostgresDatabase(t)
		}
		s, err := postgres.Open(context.Background(), url)
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}}
}

// rotationFleet is a CA store with hosts provisioned from its first CA.
type rotationFleet struct {
	backend rotationBackend
	hosts   map[string]*rotHost // by DNS name
	oldCA   *x509.Certificate
}

func rootcaOptions() rootca.Options {
	return rootca.Options{Password: func() ([]byte, error) { return []byte("rotation test password"), nil }, RevocationPollInterval: -1}
}

// server is one management server on the fleet's database: a CA opened
// on the store and a Manager around it (as "root", and as "bare" without
// the optional capabilities).
func (f *rotationFleet) server(t *testing.T, create bool) *ca.Manager {
	t.Helper()
	ctx := context.Background()
	store := f.backend.open(t)
	var root *rootca.CA
	var err error
	if create {
		root, err = rootca.Create(ctx, store, &rootca.CreateOptions{Options: rootcaOptions()})
	} else {
		root, err = rootca.Open(ctx, store, &rootca.Options{Password: rootcaOptions().Password, RevocationPollInterval: -1})
	}
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })
	reg := &provider.Registry{}
	require.NoError(t, reg.Register("root", "kvmpki built-in CA", func(context.Context) (provider.Provider, error) { return nopClose{root}, nil }))
	require.NoError(t, reg.Register("bare", "no capabilities", func(context.Context) (provider.Provider, error) { return bare{nopClose{root}}, nil }))
	require.NoError(t, reg.Register("nolease", "rotation without a lease", func(context.Context) (provider.Provider, error) {
		return noLease{nopClose{root}, root, root}, nil
	}))
	require.NoError(t, reg.Register("stolen", "a lease lost at its first renewal", func(context.Context) (provider.Provider, error) {
		return &stolenLease{nopClose: nopClose{root}}, nil
	}))
	require.NoError(t, reg.Register("lapsed", "a lease the store finds expired", func(context.Context) (provider.Provider, error) {
		return lapsedLease{nopClose{root}}, nil
	}))
	require.NoError(t, reg.Register("hung", "lease renewals that hang", func(context.Context) (provider.Provider, error) {
		return &hungLease{nopClose: nopClose{root}}, nil
	}))
	m, err := ca.New(ctx, reg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

func newRotationFleet(t *testing.T, b rotationBackend, n int) (*rotationFleet, *ca.Manager) {
	t.Helper()
	f := &rotationFleet{backend: b, hosts: map[string]*rotHost{}}
	m := f.server(t, true)
	cas, err := m.CACertificates(t.Context())
	require.NoError(t, err)
	f.oldCA = cas[0]
	for i := range n {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		h := &rotHost{name: fmt.Sprintf("kvm%02d.example.org", i), key: key}
		f.hosts[h.name] = h
		_, err = m.Provision(t.Context(), &ca.ProvisionRequest{Name: h.name, Host: h, DNSNames: []string{h.name}})
		require.NoError(t, err)
	}
	return f, m
}

// hostFor maps a certificate to its host by its DNS name.
func (f *rotationFleet) hostFor(ctx context.Context, rec *provider.CertificateRecord) (*ca.ProvisionRequest, error) {
	if len(rec.DNSNames) == 0 || f.hosts[rec.DNSNames[0]] == nil {
		return nil, nil
	}
	h := f.hosts[rec.DNSNames[0]]
	return &ca.ProvisionRequest{Name: h.name, Host: h, DNSNames: []string{h.name}}, nil
}

func (f *rotationFleet) installs() int {
	n := 0
	for _, h := range f.hosts {
		n += h.installCount()
	}
	return n
}

func issuedBy(c, issuer *x509.Certificate) bool { return c.CheckSignatureFrom(issuer) == nil }

// noLease is a provider with the rotation capability but no lease, as
// a rootca CA on a store that keeps none.
type noLease struct {
	provider.Provider
	provider.Rotator
	provider.Inventory
}

// stolenLease is the CA whose lease another driver takes over at the
// first renewal (as when this driver stalled past its expiry).
type stolenLease struct {
	nopClose
	claims atomic.Int32
}

// hungLease is the CA whose lease renewals hang, as on a database that
// stopped answering, until their context ends.
type hungLease struct {
	nopClose
	claims atomic.Int32
}

func (*hungLease) Name() string { return "hung" }

func (s *hungLease) ClaimCARotation(ctx context.Context, holder string, ttl time.Duration) error {
	if s.claims.Add(1) == 1 {
		return s.nopClose.ClaimCARotation(ctx, holder, ttl)
	}
	<-ctx.Done()
	return ctx.Err()
}

// lapsedLease is the CA whose store refuses to record the bundle push:
// the lease lapsed there (its clock ahead of this process's, say) before
// this process noticed.
type lapsedLease struct{ nopClose }

func (lapsedLease) Name() string { return "lapsed" }

func (lapsedLease) SetCARotationPushPending(context.Context, string, bool) error {
	return &provider.RotationBusyError{}
}

func (noLease) Name() string { return "nolease" }

func (*stolenLease) Name() string { return "stolen" }

func (s *stolenLease) ClaimCARotation(ctx context.Context, holder string, ttl time.Duration) error {
	if s.claims.Add(1) == 1 {
		return s.nopClose.ClaimCARotation(ctx, holder, ttl)
	}
	return &provider.RotationBusyError{Holder: "thief", Until: time.Now().Add(time.Minute)}
}

// TestRotate drives a rotation of 20 hosts end to end on the memory and
// SQLite stores: a successor CA is made, every host gets a certificate
// from it with a bundle of both CAs, the old CA is retired at the end,
// the manager's bundle holds the new CA alone and every host is given
// that bundle with its new certificate; progress is reported for every
// host.
func TestRotate(t *testing.T) {
	t.Parallel()
	for _, b := range rotationBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f, m := newRotationFleet(t, b, 20)
			var mu sync.Mutex
			phases := map[ca.RotationPhase]int{}
			res, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000, Concurrency: 8,
				Progress: func(p ca.RotationProgress) { mu.Lock(); phases[p.Phase]++; mu.Unlock() }})
			require.NoError(t, err)
			assert.True(t, res.Begun)
			assert.True(t, res.Retired)
			assert.Len(t, res.Provisioned, 20)
			assert.Empty(t, res.Failed)
			assert.Len(t, res.BundlePushed, 20)
			assert.Empty(t, res.BundleFailed)
			assert.True(t, res.Finished)
			assert.Equal(t, map[ca.RotationPhase]int{ca.PhaseBegun: 1, ca.PhaseHostDone: 20, ca.PhaseRetired: 1, ca.PhaseBundlePushed: 20, ca.PhaseDone: 1}, phases)

			cas, err := m.CACertificates(t.Context())
			require.NoError(t, err)
			require.Len(t, cas, 1, "after retirement the bundle holds the new CA alone")
			newCA := cas[0]
			assert.NotEqual(t, f.oldCA.Raw, newCA.Raw)
			for name, h := range f.hosts {
				require.Equal(t, 3, h.installCount(), "%s: provisioning, rotation, bundle push", name)
				assert.Equal(t, 2, h.setupCount(), name)
				leaf, bundle := h.install(t, 1)
				assert.True(t, issuedBy(leaf, newCA), "%s: new certificate from the new CA", name)
				require.Len(t, bundle, 2, name)
				assert.ElementsMatch(t, [][]byte{newCA.Raw, f.oldCA.Raw}, [][]byte{bundle[0].Raw, bundle[1].Raw}, "%s: both CAs during the overlap", name)
				final, bundle := h.last(t)
				assert.Equal(t, leaf.Raw, final.Raw, "%s: the push keeps the certificate", name)
				require.Len(t, bundle, 1, name)
				assert.Equal(t, newCA.Raw, bundle[0].Raw, "%s: the new CA alone after retirement", name)
			}
			st := rotationStatus(t, m)
			assert.False(t, st.InProgress())
			require.Len(t, st.Authorities, 2)
			assert.False(t, st.Authorities[0].Trusted, "old CA retired")
			assert.Equal(t, 20, st.Authorities[1].Leaves)
			assert.False(t, st.PushPending, "the push is recorded done")
			assert.Nil(t, st.Lease, "the lease is released")
		})
	}
}

// rotationStatus reads the rotation state of m's provider.
func rotationStatus(t *testing.T, m *ca.Manager) *provider.RotationStatus {
	t.Helper()
	var st *provider.RotationStatus
	require.NoError(t, ca.WithProvider(m, func(p provider.Provider) error {
		var err error
		st, err = provider.Rotation(t.Context(), p)
		return err
	}))
	return st
}

// TestRotateResume stops a rotation after some hosts (ctx cancelled), as
// a management server that restarts, then runs it again from a new
// Manager and CA on the same store: the rotation resumes (not begun
// again), finishes, and no host done before the stop is provisioned
// again.
func TestRotateResume(t *testing.T) {
	t.Parallel()
	for _, b := range rotationBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f, m := newRotationFleet(t, b, 20)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var mu sync.Mutex
			var done []string
			res, err := m.Rotate(ctx, &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000, Concurrency: 2,
				Progress: func(p ca.RotationProgress) {
					if p.Phase != ca.PhaseHostDone {
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if done = append(done, p.Host); len(done) == 8 {
						cancel()
					}
				}})
			require.ErrorIs(t, err, ca.ErrRotationIncomplete)
			require.ErrorIs(t, err, context.Canceled)
			assert.True(t, res.Begun)
			assert.False(t, res.Retired)
			require.GreaterOrEqual(t, len(done), 8)
			require.Less(t, len(done), 20)
			before := map[string]int{}
			for name, h := range f.hosts {
				before[name] = h.setupCount()
			}

			m2 := f.server(t, false) // the restarted server
			res2, err := m2.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000})
			require.NoError(t, err)
			assert.False(t, res2.Begun, "resumed, not begun again")
			assert.True(t, res2.Retired)
			assert.Len(t, res2.Provisioned, 20-len(done))
			for _, name := range done {
				assert.Equal(t, before[name], f.hosts[name].setupCount(), "%s was done before the restart", name)
				assert.NotContains(t, res2.Provisioned, name)
			}
			cas, err := m2.CACertificates(t.Context())
			require.NoError(t, err)
			require.Len(t, cas, 1)
			for name, h := range f.hosts {
				leaf, _ := h.last(t)
				assert.True(t, issuedBy(leaf, cas[0]), name)
			}
		})
	}
}

// TestRotateFailingHost: a host whose install fails is reported, and the
// old CA is not retired (the rotation stays in progress); once the host
// is fixed, a second run provisions it alone and retires the old CA.
func TestRotateFailingHost(t *testing.T) {
	t.Parallel()
	for _, b := range rotationBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f, m := newRotationFleet(t, b, 5)
			bad := f.hosts["kvm03.example.org"]
			bad.fail = true
			res, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000})
			require.ErrorIs(t, err, ca.ErrRotationIncomplete)
			assert.ErrorContains(t, err, bad.name)
			assert.False(t, res.Retired)
			require.Contains(t, res.Failed, bad.name)
			assert.ErrorIs(t, res.Failed[bad.name], errHostStep)
			var pe *ca.ProvisionError
			require.ErrorAs(t, res.Failed[bad.name], &pe)
			assert.Equal(t, ca.StepInstall, pe.Step)
			assert.Len(t, res.Provisioned, 4)
			st := rotationStatus(t, m)
			assert.True(t, st.InProgress(), "the old CA is kept")
			cas, err := m.CACertificates(t.Context())
			require.NoError(t, err)
			assert.Len(t, cas, 2)

			bad.mu.Lock()
			bad.fail = false
			bad.mu.Unlock()
			res, err = m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000})
			require.NoError(t, err)
			assert.Equal(t, []string{bad.name}, res.Provisioned)
			assert.True(t, res.Retired)
		})
	}
}

// TestRotateUnknownHost: a certificate of the old CA that no host holds
// keeps the old CA unless Force.
func TestRotateUnknownHost(t *testing.T) {
	t.Parallel()
	b := rotationBackends(t)[0]
	f, m := newRotationFleet(t, b, 3)
	_, err := m.Issue(t.Context(), &ca.IssueRequest{CSR: csrFor(t, "orphan", "orphan.example.org"), DNSNames: []string{"orphan.example.org"}})
	require.NoError(t, err)
	res, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000})
	require.ErrorIs(t, err, ca.ErrRotationIncomplete)
	assert.ErrorIs(t, err, provider.ErrLeavesRemain)
	assert.Len(t, res.Skipped, 1)
	assert.False(t, res.Retired)

	res, err = m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000, Force: true})
	require.NoError(t, err)
	assert.True(t, res.Retired)
	assert.Empty(t, res.Provisioned)
}

// TestRotateRateLimit: at 40 hosts per second, with a concurrency that
// does not limit, the 20 hosts' starts span at least 19/40 s; each
// host's step takes a millisecond, so it is the rate that spaces them.
func TestRotateRateLimit(t *testing.T) {
	t.Parallel()
	f, m := newRotationFleet(t, rotationBackends(t)[0], 20)
	var mu sync.Mutex
	var first, last time.Time
	_, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 40, Concurrency: 20,
		Progress: func(p ca.RotationProgress) {
			if p.Phase != ca.PhaseHostDone {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if first.IsZero() {
				first = time.Now()
			}
			last = time.Now()
		}})
	require.NoError(t, err)
	span := last.Sub(first)
	assert.GreaterOrEqual(t, span, 17*time.Second/40, "19 gaps of 25 ms, less a scheduling margin")
	t.Logf("20 hosts at 40/s: first to last host %v (19 gaps: %v)", span, 19*time.Second/40)
}

// TestRotateTwoDrivers runs two drivers at once, on two management
// servers (a CA and a Manager each) sharing the database, on the memory
// store, SQLite and PostgreSQL, with hosts slow to provision (20 ms an
// install, so that the winner is still at work when the other claims):
// one driver gets ErrRotationBusy naming the other and changes nothing,
// the other begins and completes the rotation, and every host is
// provisioned exactly once by it (never twice, nor by both at once).
func TestRotateTwoDrivers(t *testing.T) {
	t.Parallel()
	for _, b := range append(rotationBackends(t), postgresBackend()) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f, m1 := newRotationFleet(t, b, 20)
			for _, h := range f.hosts {
				h.delay = 20 * time.Millisecond
			}
			m2 := f.server(t, false)
			var wg sync.WaitGroup
			results := make([]*ca.RotationResult, 2)
			errs := make([]error, 2)
			start := make(chan struct{})
			for i, m := range []*ca.Manager{m1, m2} {
				wg.Go(func() {
					<-start
					results[i], errs[i] = m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000, Concurrency: 4,
						Driver: fmt.Sprintf("server-%d", i+1)})
				})
			}
			close(start)
			wg.Wait()
			busy, winner := -1, -1
			for i, err := range errs {
				if err == nil {
					winner = i
					continue
				}
				busy = i
				require.ErrorIs(t, err, ca.ErrRotationBusy, "driver %d", i)
				var be *provider.RotationBusyError
				require.ErrorAs(t, err, &be)
				assert.Contains(t, be.Holder, fmt.Sprintf("server-%d", 2-i), "the busy error names the other driver")
				assert.True(t, be.Until.After(time.Now()), "until a time to come")
			}
			require.NotEqual(t, -1, busy, "one driver is refused")
			require.NotEqual(t, -1, winner, "the other completes")
			assert.False(t, results[busy].Begun, "the refused driver did nothing")
			assert.Empty(t, results[busy].Provisioned, "the refused driver did nothing")
			assert.True(t, results[winner].Begun)
			assert.True(t, results[winner].Finished)
			assert.Len(t, results[winner].Provisioned, 20)
			for name, h := range f.hosts {
				assert.Equal(t, 2, h.setupCount(), "%s provisioned once by the rotation", name)
				assert.Equal(t, 3, h.installCount(), "%s: provisioning, rotation, bundle push", name)
				assert.False(t, h.overlap, name)
			}
			st := rotationStatus(t, m1)
			assert.False(t, st.InProgress(), "the old CA ends retired")
			assert.Len(t, st.Authorities, 2, "one rotation only")
			assert.Nil(t, st.Lease)
		})
	}
}

// TestRotateBusy: while another driver's lease is unexpired, Rotate
// returns ErrRotationBusy naming it at once and changes nothing; once
// that lease expires (a driver that crashed), Rotate takes it over and
// completes, and shows its own lease in the status while it works.
func TestRotateBusy(t *testing.T) {
	t.Parallel()
	f, m := newRotationFleet(t, rotationBackends(t)[1], 3)
	claim := func(holder string, ttl time.Duration) {
		require.NoError(t, ca.WithProvider(m, func(p provider.Provider) error {
			return provider.ClaimRotation(t.Context(), p, holder, ttl)
		}))
	}
	claim("crashed server", time.Hour)
	res, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000})
	require.ErrorIs(t, err, ca.ErrRotationBusy)
	assert.ErrorContains(t, err, `"crashed server"`)
	var be *provider.RotationBusyError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, "crashed server", be.Holder)
	assert.WithinDuration(t, time.Now().Add(time.Hour), be.Until, time.Minute)
	assert.False(t, res.Begun)
	st := rotationStatus(t, m)
	assert.False(t, st.InProgress(), "nothing begun")
	require.NotNil(t, st.Lease)
	assert.Equal(t, "crashed server", st.Lease.Holder)
	for name, h := range f.hosts {
		assert.Equal(t, 1, h.installCount(), name)
	}

	claim("crashed server", time.Millisecond) // its last renewal
	time.Sleep(10 * time.Millisecond)
	var held *provider.RotationLease
	res, err = m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000, Driver: "server-2",
		Progress: func(p ca.RotationProgress) {
			if p.Phase == ca.PhaseBegun {
				held = rotationStatus(t, m).Lease
			}
		}})
	require.NoError(t, err, "an expired lease is taken over")
	assert.True(t, res.Finished)
	require.NotNil(t, held, "the lease is shown while the driver works")
	assert.Regexp(t, `^server-2 [0-9a-f]{12}$`, held.Holder)
	assert.Nil(t, rotationStatus(t, m).Lease, "released at the end")
}

// TestRotateRenewsLease: a rotation that takes over twice its lease
// (1.2 s, renewed every 400 ms, so that a renewal may be late by 800 ms
// on a loaded machine; 10 hosts of 150 ms one at a time, provisioned
// and then pushed the bundle) keeps it by renewing it: a competitor
// claiming every 20 ms is refused throughout, and the rotation
// completes.
func TestRotateRenewsLease(t *testing.T) {
	t.Parallel()
	f, m := newRotationFleet(t, rotationBackends(t)[1], 10)
	for _, h := range f.hosts {
		h.delay = 150 * time.Millisecond
	}
	const lease = 1200 * time.Millisecond
	done := make(chan struct{})
	var refused, won atomic.Int32
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(20 * time.Millisecond)
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			err := ca.WithProvider(m, func(p provider.Provider) error {
				return provider.ClaimRotation(t.Context(), p, "competitor", time.Minute)
			})
			switch {
			case errors.Is(err, provider.ErrRotationBusy):
				refused.Add(1)
			case err == nil:
				won.Add(1)
				return
			}
		}
	})
	started := time.Now()
	res, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000, Concurrency: 1, Lease: lease})
	took := time.Since(started)
	close(done)
	wg.Wait()
	require.NoError(t, err)
	assert.True(t, res.Finished)
	assert.Greater(t, took, 2*lease, "the rotation outlasts several leases")
	assert.Zero(t, won.Load(), "the competitor never got the lease while the driver worked")
	assert.Greater(t, refused.Load(), int32(10))
	t.Logf("rotation of %v under a %v lease; the competitor was refused %d times", took.Round(time.Millisecond), lease, refused.Load())
}

// TestRotateLeaseLost: a driver that loses its lease stops provisioning
// at once, its error matching ErrRotationBusy and ErrRotationIncomplete,
// having provisioned few hosts (20 hosts one at a time): when its
// renewal finds another holder (it stalled past its lease, and another
// driver took over; lease 600 ms, so first renewed at 200 ms, hosts of
// 60 ms), and when its renewal hangs (the store stopped answering) and
// the lease expires meanwhile (300 ms, hosts of 100 ms), not when the
// renewal returns.
func TestRotateLeaseLost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, provider string
		delay, lease   time.Duration
		says           string
	}{
		{"taken over", "stolen", 60 * time.Millisecond, 600 * time.Millisecond, "thief"},
		{"renewal hangs", "hung", 100 * time.Millisecond, 300 * time.Millisecond, "expire"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, m := newRotationFleet(t, rotationBackends(t)[0], 20)
			for _, h := range f.hosts {
				h.delay = tc.delay
			}
			require.NoError(t, m.SetProvider(t.Context(), tc.provider))
			res, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000, Concurrency: 1, Lease: tc.lease})
			require.ErrorIs(t, err, ca.ErrRotationIncomplete)
			require.ErrorIs(t, err, ca.ErrRotationBusy)
			assert.ErrorContains(t, err, tc.says)
			assert.False(t, res.Retired)
			assert.Less(t, len(res.Provisioned), 10, "stopped with the lease, not after 20 hosts")
		})
	}
}

// TestRotateLeaseLapsedInStore: when the store refuses to record the
// bundle push (the lease expired there before this process noticed),
// Rotate stops before retiring, and its error says the rotation is
// incomplete (the next Rotate resumes it) and why.
func TestRotateLeaseLapsedInStore(t *testing.T) {
	t.Parallel()
	f, m := newRotationFleet(t, rotationBackends(t)[0], 2)
	require.NoError(t, m.SetProvider(t.Context(), "lapsed"))
	res, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000})
	require.ErrorIs(t, err, ca.ErrRotationIncomplete)
	assert.ErrorIs(t, err, ca.ErrRotationBusy)
	assert.Len(t, res.Provisioned, 2)
	assert.False(t, res.Retired)
	assert.True(t, rotationStatus(t, m).InProgress(), "the previous CA is kept")
}

// TestRotateResumePush stops the driver right after the retirement
// (its context cancelled from the Progress callback), as a management
// server that stops between the retirement and the end of the bundle
// push: the store records the push as pending, and Rotate on a new
// Manager and CA on the same store (a restarted server) finishes the
// push, to every host, without beginning a new rotation, and records it
// done. On the memory store, SQLite and PostgreSQL.
func TestRotateResumePush(t *testing.T) {
	t.Parallel()
	for _, b := range append(rotationBackends(t), postgresBackend()) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f, m := newRotationFleet(t, b, 6)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			res, err := m.Rotate(ctx, &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000,
				Progress: func(p ca.RotationProgress) {
					if p.Phase == ca.PhaseRetired {
						cancel()
					}
				}})
			require.ErrorIs(t, err, ca.ErrRotationIncomplete)
			require.ErrorIs(t, err, context.Canceled)
			assert.True(t, res.Retired)
			assert.False(t, res.Finished)
			assert.Empty(t, res.BundlePushed)
			st := rotationStatus(t, m)
			assert.False(t, st.InProgress(), "the old CA is retired")
			assert.True(t, st.PushPending, "the push is recorded as owed")
			assert.Nil(t, st.Lease, "the stopped driver released its lease")
			for name, h := range f.hosts {
				_, bundle := h.last(t)
				assert.Len(t, bundle, 2, "%s has not had the final bundle yet", name)
			}

			m2 := f.server(t, false) // the restarted server
			var phases []ca.RotationPhase
			res, err = m2.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000,
				Progress: func(p ca.RotationProgress) {
					if p.Phase != ca.PhaseBundlePushed {
						phases = append(phases, p.Phase)
					}
				}})
			require.NoError(t, err)
			assert.False(t, res.Begun, "no new rotation")
			assert.False(t, res.Retired)
			assert.Empty(t, res.Provisioned)
			assert.Len(t, res.BundlePushed, 6)
			assert.True(t, res.Finished)
			assert.Equal(t, []ca.RotationPhase{ca.PhaseResumed, ca.PhaseDone}, phases)
			cas, err := m2.CACertificates(t.Context())
			require.NoError(t, err)
			require.Len(t, cas, 1)
			for name, h := range f.hosts {
				assert.Equal(t, 2, h.setupCount(), "%s not provisioned again", name)
				leaf, bundle := h.last(t)
				assert.True(t, issuedBy(leaf, cas[0]), name)
				require.Len(t, bundle, 1, "%s: the bundle without the retired CA", name)
				assert.Equal(t, cas[0].Raw, bundle[0].Raw, name)
			}
			st = rotationStatus(t, m2)
			assert.False(t, st.PushPending, "the push is recorded done")
			assert.Len(t, st.Authorities, 2)
		})
	}
}

// TestRotateWithoutLease: a provider with the rotation capability but no
// lease (a rootca CA on a store that keeps none) still rotates end to
// end, without a lease.
func TestRotateWithoutLease(t *testing.T) {
	t.Parallel()
	f, m := newRotationFleet(t, rotationBackends(t)[0], 3)
	require.NoError(t, m.SetProvider(t.Context(), "nolease"))
	res, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000})
	require.NoError(t, err)
	assert.True(t, res.Begun)
	assert.True(t, res.Retired)
	assert.Len(t, res.BundlePushed, 3)
	assert.True(t, res.Finished)
}

// TestRotateUnsupported: a provider without the rotation capability
// gives errors.ErrUnsupported, and a nil HostFor is refused.
func TestRotateUnsupported(t *testing.T) {
	t.Parallel()
	f, m := newRotationFleet(t, rotationBackends(t)[0], 1)
	require.NoError(t, m.SetProvider(t.Context(), "bare"))
	_, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor})
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	_, err = m.Rotate(t.Context(), nil)
	assert.ErrorIs(t, err, provider.ErrInvalidRequest)
}

// TestRotateBundlePushFails: a host that refuses the final bundle push
// is named in the error, which matches ErrRotationIncomplete: the old CA
// is retired, the push stays recorded as owed, and the next Rotate
// (the host fixed) pushes the bundle to every host again instead of
// beginning a new rotation, and records the push done.
func TestRotateBundlePushFails(t *testing.T) {
	t.Parallel()
	f, m := newRotationFleet(t, rotationBackends(t)[0], 3)
	bad := f.hosts["kvm01.example.org"]
	bad.mu.Lock()
	bad.maxOK = 2 // its provisioning and its rotation succeed
	bad.mu.Unlock()
	res, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000})
	require.ErrorIs(t, err, ca.ErrRotationIncomplete)
	assert.ErrorContains(t, err, bad.name)
	assert.True(t, res.Retired)
	assert.False(t, res.Finished)
	assert.Len(t, res.BundlePushed, 2)
	require.Contains(t, res.BundleFailed, bad.name)
	assert.ErrorIs(t, res.BundleFailed[bad.name], errHostStep)
	assert.True(t, rotationStatus(t, m).PushPending)

	bad.mu.Lock()
	bad.maxOK = 0
	bad.mu.Unlock()
	res, err = m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000})
	require.NoError(t, err)
	assert.False(t, res.Begun)
	assert.Len(t, res.BundlePushed, 3)
	assert.True(t, res.Finished)
	_, bundle := bad.last(t)
	assert.Len(t, bundle, 1, "the fixed host has the bundle without the retired CA")
	st := rotationStatus(t, m)
	assert.False(t, st.PushPending)
	assert.Len(t, st.Authorities, 2, "no new rotation begun")
}

// TestRotateBundlePushForced: with Force, a failed push is forgiven and
// recorded done.
func TestRotateBundlePushForced(t *testing.T) {
	t.Parallel()
	f, m := newRotationFleet(t, rotationBackends(t)[0], 3)
	bad := f.hosts["kvm02.example.org"]
	bad.mu.Lock()
	bad.maxOK = 2
	bad.mu.Unlock()
	res, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000, Force: true})
	require.NoError(t, err)
	assert.True(t, res.Finished)
	assert.Contains(t, res.BundleFailed, bad.name)
	assert.False(t, rotationStatus(t, m).PushPending)
}

// TestRotateTinyLease: a lease of a nanosecond is useless but must not
// crash the driver (a renewal ticker of zero panics): Rotate returns an
// error, the lease lost.
func TestRotateTinyLease(t *testing.T) {
	t.Parallel()
	f, m := newRotationFleet(t, rotationBackends(t)[0], 2)
	_, err := m.Rotate(t.Context(), &ca.RotateOptions{HostFor: f.hostFor, RatePerSecond: 1000, Lease: time.Nanosecond})
	require.Error(t, err)
	assert.ErrorIs(t, err, ca.ErrRotationBusy)
}
