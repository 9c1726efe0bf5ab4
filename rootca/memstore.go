package rootca

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca/internal/storecheck"
)

var _ Store = (*MemStore)(nil)

// MemStore is a Store that keeps everything in memory, for tests and
// throwaway CAs. Nothing survives the process, so the durability the Store
// contract asks for holds only for the MemStore's lifetime.
//
// The zero value is an empty store ready to use. A MemStore is safe for
// concurrent use; it copies every value going in and coming out, so
// callers cannot change its state behind its back.
type MemStore struct {
	mu        sync.RWMutex
	closed    bool
	gens      []Generation // gens[i] is generation i+1
	genStamp  int64
	certs     map[string]*provider.CertificateRecord // by provider.FormatSerial
	crlNumber int64
	revoked   []Revocation // in order of revocation: index i has cursor i+1
	lease     RotationLease
}

// NewMemStore returns an empty MemStore. It is equivalent to new(MemStore).
func NewMemStore() *MemStore {
	return new(MemStore)
}

// enter takes the read or write lock and checks that the store is open and
// ctx not done. If it returns nil, the caller must call the returned
// unlock function.
func (m *MemStore) enter(ctx context.Context, write bool, op string) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rootca: %s: %w", op, err)
	}
	if write {
		m.mu.Lock()
		unlock = m.mu.Unlock
	} else {
		m.mu.RLock()
		unlock = m.mu.RUnlock
	}
	if m.closed {
		unlock()
		return nil, ErrStoreClosed
	}
	return unlock, nil
}

// LoadAuthority returns a copy of the stored CA (its newest generation),
// or an error matching provider.ErrNotFound.
func (m *MemStore) LoadAuthority(ctx context.Context) (*Authority, error) {
	unlock, err := m.enter(ctx, false, "load authority")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if len(m.gens) == 0 {
		return nil, storecheck.ErrNoAuthority
	}
	return cloneAuthority(&m.gens[len(m.gens)-1].Authority), nil
}

// CreateAuthority stores a copy of a, unless the store already holds a CA,
// in which case it returns ErrAuthorityExists.
func (m *MemStore) CreateAuthority(ctx context.Context, a *Authority) error {
	if err := storecheck.Authority(authorityCerts(a), a == nil); err != nil {
		return err
	}
	unlock, err := m.enter(ctx, true, "create authority")
	if err != nil {
		return err
	}
	defer unlock()
	if len(m.gens) > 0 {
		return ErrAuthorityExists
	}
	m.gens = []Generation{{Number: 1, Authority: *cloneAuthority(a)}}
	return nil
}

// AddCertificate records a copy of rec.
func (m *MemStore) AddCertificate(ctx context.Context, rec *provider.CertificateRecord) error {
	if err := storecheck.Record(rec); err != nil {
		return err
	}
	unlock, err := m.enter(ctx, true, "add certificate")
	if err != nil {
		return err
	}
	defer unlock()
	key := provider.FormatSerial(rec.Serial)
	if _, ok := m.certs[key]; ok {
		return storecheck.DuplicateSerial(rec.Serial)
	}
	if m.certs == nil {
		m.certs = make(map[string]*provider.CertificateRecord)
	}
	m.certs[key] = cloneRecord(rec)
	return nil
}

// Certificate returns a copy of the record for serial.
func (m *MemStore) Certificate(ctx context.Context, serial *big.Int) (*provider.CertificateRecord, error) {
	if err := storecheck.Serial(serial); err != nil {
		return nil, err
	}
	unlock, err := m.enter(ctx, false, "certificate")
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, ok := m.certs[provider.FormatSerial(serial)]
	if !ok {
		return nil, storecheck.NotFound(serial)
	}
	return cloneRecord(rec), nil
}

// ListCertificates returns copies of the records matching opts (nil means
// all), in increasing order of NotAfter, then serial.
func (m *MemStore) ListCertificates(ctx context.Context, opts *provider.ListOptions) ([]*provider.CertificateRecord, error) {
	unlock, err := m.enter(ctx, false, "list certificates")
	if err != nil {
		return nil, err
	}
	defer unlock()
	var list []*provider.CertificateRecord
	for _, rec := range m.certs {
		if opts != nil && opts.Status != nil && rec.Status != *opts.Status {
			continue
		}
		if opts != nil && !opts.ExpiringBefore.IsZero() && !rec.NotAfter.Before(opts.ExpiringBefore) {
			continue
		}
		list = append(list, cloneRecord(rec))
	}
	slices.SortFunc(list, func(a, b *provider.CertificateRecord) int {
		if c := a.NotAfter.Compare(b.NotAfter); c != 0 {
			return c
		}
		return a.Serial.Cmp(b.Serial)
	})
	return list, nil
}

// Revoke marks the certificate with serial revoked for reason at the
// given time.
func (m *MemStore) Revoke(ctx context.Context, serial *big.Int, reason provider.RevocationReason, at time.Time) (*Revocation, error) {
	if err := storecheck.Revocation(serial, reason, at); err != nil {
		return nil, err
	}
	unlock, err := m.enter(ctx, true, "revoke")
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, ok := m.certs[provider.FormatSerial(serial)]
	if !ok {
		return nil, storecheck.NotFound(serial)
	}
	if rec.Status == provider.StatusRevoked {
		return nil, storecheck.AlreadyRevoked(serial)
	}
	rec.Status = provider.StatusRevoked
	rec.Reason = reason
	rec.RevokedAt = at.UTC()
	rev := Revocation{
		Serial:    new(big.Int).Set(rec.Serial),
		RevokedAt: rec.RevokedAt,
		Reason:    rec.Reason,
		NotAfter:  rec.NotAfter,
	}
	m.revoked = append(m.revoked, rev)
	return copyRevocation(rev), nil
}

func copyRevocation(r Revocation) *Revocation {
	r.Serial = new(big.Int).Set(r.Serial)
	return &r
}

// RevocationsSince returns the revocations made after cursor, in the order
// they were made, and the cursor to pass next time; cursor 0 asks for all.
func (m *MemStore) RevocationsSince(ctx context.Context, cursor int64) ([]Revocation, int64, error) {
	unlock, err := m.enter(ctx, false, "revocations since")
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	if cursor < 0 || cursor > int64(len(m.revoked)) {
		cursor = 0 // unknown: start over
	}
	list := make([]Revocation, 0, int64(len(m.revoked))-cursor)
	for _, r := range m.revoked[cursor:] {
		list = append(list, *copyRevocation(r))
	}
	return list, int64(len(m.revoked)), nil
}

// Revocations returns every revocation, in increasing order of serial.
func (m *MemStore) Revocations(ctx context.Context) ([]Revocation, error) {
	unlock, err := m.enter(ctx, false, "revocations")
	if err != nil {
		return nil, err
	}
	defer unlock()
	var list []Revocation
	for _, rec := range m.certs {
		if rec.Status != provider.StatusRevoked {
			continue
		}
		list = append(list, Revocation{
			Serial:    new(big.Int).Set(rec.Serial),
			RevokedAt: rec.RevokedAt,
			Reason:    rec.Reason,
			NotAfter:  rec.NotAfter,
		})
	}
	slices.SortFunc(list, func(a, b Revocation) int { return a.Serial.Cmp(b.Serial) })
	return list, nil
}

// NextCRLNumber increments the CRL number and returns it. The first call
// returns 1.
func (m *MemStore) NextCRLNumber(ctx context.Context) (*big.Int, error) {
	unlock, err := m.enter(ctx, true, "next crl number")
	if err != nil {
		return nil, err
	}
	defer unlock()
	m.crlNumber++
	return big.NewInt(m.crlNumber), nil
}

// Close marks the store closed and drops its contents; later calls return
// ErrStoreClosed. Closing a closed MemStore does nothing and returns nil.
func (m *MemStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.gens, m.certs, m.revoked = nil, nil, nil
	return nil
}

func cloneAuthority(a *Authority) *Authority {
	c := &Authority{Certificates: make([][]byte, len(a.Certificates))}
	for i, der := range a.Certificates {
		c.Certificates[i] = slices.Clone(der)
	}
	if len(a.Key) > 0 {
		c.Key = slices.Clone(a.Key)
	}
	return c
}

// cloneRecord deep-copies rec, with times in UTC, empty lists as nil and
// IPv4 addresses in their 4-byte form, the form sqlstore.Store returns too.
func cloneRecord(rec *provider.CertificateRecord) *provider.CertificateRecord {
	c := *rec
	c.Serial = new(big.Int).Set(rec.Serial)
	c.DNSNames = nil
	if len(rec.DNSNames) > 0 {
		c.DNSNames = slices.Clone(rec.DNSNames)
	}
	c.IPAddresses = nil
	for _, ip := range rec.IPAddresses {
		c.IPAddresses = append(c.IPAddresses, storecheck.NormalizeIP(ip))
	}
	c.NotBefore = rec.NotBefore.UTC()
	c.NotAfter = rec.NotAfter.UTC()
	if !rec.RevokedAt.IsZero() {
		c.RevokedAt = rec.RevokedAt.UTC()
	}
	c.Raw = slices.Clone(rec.Raw)
	return &c
}

// authorityCerts returns a's chain, or nil for a nil a.
func authorityCerts(a *Authority) [][]byte {
	if a == nil {
		return nil
	}
	return a.Certificates
}

var _ RotationLeaseStore = (*MemStore)(nil)

// Generations returns copies of every CA generation, oldest first.
func (m *MemStore) Generations(ctx context.Context) ([]Generation, error) {
	unlock, err := m.enter(ctx, false, "generations")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if len(m.gens) == 0 {
		return nil, storecheck.ErrNoAuthority
	}
	out := make([]Generation, len(m.gens))
	for i, g := range m.gens {
		out[i] = Generation{Number: g.Number, Authority: *cloneAuthority(&g.Authority), RetiredAt: g.RetiredAt}
	}
	return out, nil
}

// AddGeneration stores a copy of g as the newest generation, if g.Number
// follows the newest and every older generation is retired.
func (m *MemStore) AddGeneration(ctx context.Context, g *Generation) error {
	if err := storecheck.Generation(generationNumber(g), generationCerts(g), g == nil); err != nil {
		return err
	}
	unlock, err := m.enter(ctx, true, "add generation")
	if err != nil {
		return err
	}
	defer unlock()
	if len(m.gens) == 0 {
		return storecheck.ErrNoAuthority
	}
	if g.Number != len(m.gens)+1 {
		return fmt.Errorf("%w (generation %d exists)", ErrRotationInProgress, min(g.Number, len(m.gens)))
	}
	for _, old := range m.gens[:len(m.gens)-1] {
		if old.RetiredAt.IsZero() {
			return fmt.Errorf("%w (generation %d is not retired)", ErrRotationInProgress, old.Number)
		}
	}
	m.gens = append(m.gens, Generation{Number: g.Number, Authority: *cloneAuthority(&g.Authority)})
	m.genStamp++
	return nil
}

// RetireGeneration marks generation number retired at the given time.
func (m *MemStore) RetireGeneration(ctx context.Context, number int, at time.Time) error {
	if err := storecheck.Retirement(number, at); err != nil {
		return err
	}
	unlock, err := m.enter(ctx, true, "retire generation")
	if err != nil {
		return err
	}
	defer unlock()
	if number >= len(m.gens) || !m.gens[number-1].RetiredAt.IsZero() {
		return fmt.Errorf("%w (generation %d)", ErrNotRetirable, number)
	}
	m.gens[number-1].RetiredAt = at.UTC()
	m.genStamp++
	return nil
}

// GenerationStamp returns the number of generation changes so far.
func (m *MemStore) GenerationStamp(ctx context.Context) (int64, error) {
	unlock, err := m.enter(ctx, false, "generation stamp")
	if err != nil {
		return 0, err
	}
	defer unlock()
	return m.genStamp, nil
}

func generationNumber(g *Generation) int {
	if g == nil {
		return 0
	}
	return g.Number
}

func generationCerts(g *Generation) [][]byte {
	if g == nil {
		return nil
	}
	return g.Certificates
}

// ClaimRotation gives holder the rotation lease until until, if it is
// free, holder's, or expired at now.
func (m *MemStore) ClaimRotation(ctx context.Context, holder string, now, until time.Time) error {
	if err := storecheck.Claim(holder, now, until); err != nil {
		return err
	}
	unlock, err := m.enter(ctx, true, "claim rotation")
	if err != nil {
		return err
	}
	defer unlock()
	if l := m.lease; l.Holder != "" && l.Holder != holder && l.Until.After(now) {
		return &provider.RotationBusyError{Holder: l.Holder, Until: l.Until}
	}
	m.lease.Holder, m.lease.Until = holder, until.UTC()
	return nil
}

// ReleaseRotation frees the rotation lease if holder holds it.
func (m *MemStore) ReleaseRotation(ctx context.Context, holder string) error {
	if err := storecheck.Holder("release rotation", holder); err != nil {
		return err
	}
	unlock, err := m.enter(ctx, true, "release rotation")
	if err != nil {
		return err
	}
	defer unlock()
	if m.lease.Holder == holder {
		m.lease.Holder, m.lease.Until = "", time.Time{}
	}
	return nil
}

// SetRotationPushPending sets PushPending under holder's unexpired lease.
func (m *MemStore) SetRotationPushPending(ctx context.Context, holder string, now time.Time, pending bool) error {
	if err := storecheck.Holder("set rotation push pending", holder); err != nil {
		return err
	}
	unlock, err := m.enter(ctx, true, "set rotation push pending")
	if err != nil {
		return err
	}
	defer unlock()
	if l := m.lease; l.Holder != holder || !l.Until.After(now) {
		return storecheck.Busy(l.Holder, l.Until, now)
	}
	m.lease.PushPending = pending
	return nil
}

// RotationLease returns a copy of the rotation lease.
func (m *MemStore) RotationLease(ctx context.Context) (*RotationLease, error) {
	unlock, err := m.enter(ctx, false, "rotation lease")
	if err != nil {
		return nil, err
	}
	defer unlock()
	l := m.lease
	return &l, nil
}
