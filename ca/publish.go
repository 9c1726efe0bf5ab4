package ca

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// noticeTimeout bounds the republishing after one revocation notice.
const noticeTimeout = time.Minute

// publisher holds a provider's current CRL, signed (or fetched) when a
// revocation happens through the Manager or when NextUpdate nears, never
// per request, and an index of its entries for O(1) lookups.
type publisher struct {
	h *handle

	signMu     sync.Mutex // one signing at a time
	state      atomic.Pointer[crlState]
	refreshing atomic.Bool
	// rev counts invalidations (revocations and issuances through the
	// Manager, new CRLs): a cached OCSP answer computed before a change
	// is not stored.
	rev atomic.Uint64

	ocspMu sync.Mutex
	// ocsp holds signed answers by serial (hex), then by CertID (hash
	// algorithm and issuer key hash, which the answer repeats and clients
	// match); guarded by ocspMu.
	ocsp map[string]map[string]*ocspEntry
	// ocspReqs maps requests already answered (DER) to their answer's
	// key, so a repeated request skips parsing; guarded by ocspMu. Only
	// requests about this CA's certificates get in.
	ocspReqs map[string]ocspKey

	closed atomic.Bool
	// stopNotices ends the subscription to the provider's revocation
	// notices and noticesDone is closed when watchNotices has returned;
	// both nil when the provider sends none.
	stopNotices context.CancelFunc
	noticesDone chan struct{}
}

type crlState struct {
	crls       []*x509.RevocationList
	der        []byte // the first CRL, the issuing CA's
	pem        []byte // every CRL
	etag       string
	thisUpdate time.Time
	nextUpdate time.Time
	refreshAt  time.Time
	index      map[string]x509.RevocationListEntry // serial hex -> entry
}

func (h *handle) publisher() *publisher {
	h.pubOnce.Do(func() {
		h.pub = &publisher{h: h, ocsp: map[string]map[string]*ocspEntry{}, ocspReqs: map[string]ocspKey{}}
		h.pub.subscribe()
	})
	return h.pub
}

// subscribe starts following the provider's revocation notices
// ([provider.RevocationNotifier]), if it sends any: revocations other
// management servers make through a shared store reach the CRL and the
// OCSP answers as soon as the provider learns of them, instead of at the
// next re-sign or refresh.
func (p *publisher) subscribe() {
	ctx, cancel := context.WithCancel(context.Background())
	notices, err := provider.NotifyRevocations(ctx, p.h.p)
	if err != nil {
		cancel()
		return
	}
	p.stopNotices, p.noticesDone = cancel, make(chan struct{})
	go p.watchNotices(ctx, notices)
}

// watchNotices republishes after each notice, until the subscription
// ends (close cancels ctx, and the provider then closes notices).
func (p *publisher) watchNotices(ctx context.Context, notices <-chan struct{}) {
	defer close(p.noticesDone)
	for range notices {
		if ctx.Err() != nil {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, noticeTimeout)
		p.noticed(sctx)
		cancel()
	}
}

// noticed publishes revocations the provider reports: it signs (or
// fetches) a new CRL if one was served, and drops the cached OCSP
// answers of the serials that joined the CRL, or all of them when there
// is no CRL to compare with.
func (p *publisher) noticed(ctx context.Context) {
	p.h.m.dropRevoked(ctx, p.h, nil)
	old := p.state.Load()
	if old == nil {
		p.invalidate(nil)
		return
	}
	st, err := p.refresh(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.h.m.s.logger.Warn("ca: signing the CRL after a revocation notice failed", "provider", p.h.p.Name(), "error", err)
		}
		p.invalidate(nil)
		return
	}
	for key := range st.index {
		if _, ok := old.index[key]; !ok {
			p.invalidateKey(key)
		}
	}
}

// publisherNoted records that a certificate was issued: a cached
// "unknown" OCSP answer for its serial must go.
func (h *handle) publisherNoted(cert *x509.Certificate) {
	h.publisher().invalidate(cert.SerialNumber)
}

// close stops the publisher's background work and waits for it, so that
// the provider can be closed next.
func (p *publisher) close() {
	p.closed.Store(true)
	if p.stopNotices != nil {
		p.stopNotices()
		<-p.noticesDone
	}
}

// ocspKey names a cached OCSP answer: its serial (hex) and CertID.
type ocspKey struct{ serial, certID string }

// cachedAnswer returns the answer cached under k if it is fresh at now,
// or nil.
func (p *publisher) cachedAnswer(k ocspKey, now time.Time) []byte {
	p.ocspMu.Lock()
	defer p.ocspMu.Unlock()
	e := p.ocsp[k.serial][k.certID]
	if e == nil || !now.Before(e.refreshAt) {
		return nil
	}
	return e.der
}

// storeAnswer caches der under k unless an invalidation happened since
// rev was read (the answer may predate it).
func (p *publisher) storeAnswer(k ocspKey, der []byte, refreshAt time.Time, rev uint64) {
	p.ocspMu.Lock()
	defer p.ocspMu.Unlock()
	if p.rev.Load() != rev {
		return
	}
	byID := p.ocsp[k.serial]
	if byID == nil {
		if len(p.ocsp) >= maxOCSPCache {
			clear(p.ocsp)
		}
		byID = map[string]*ocspEntry{}
		p.ocsp[k.serial] = byID
	}
	byID[k.certID] = &ocspEntry{der: der, refreshAt: refreshAt}
}

// rememberRequest records that reqDER's answer is cached under k.
func (p *publisher) rememberRequest(reqDER []byte, k ocspKey) {
	p.ocspMu.Lock()
	defer p.ocspMu.Unlock()
	if _, ok := p.ocspReqs[string(reqDER)]; ok {
		return
	}
	if len(p.ocspReqs) >= maxOCSPCache {
		clear(p.ocspReqs)
	}
	p.ocspReqs[string(reqDER)] = k
}

// invalidate drops the cached OCSP answer of serial, or every one when
// serial is nil.
func (p *publisher) invalidate(serial *big.Int) {
	if serial == nil {
		p.rev.Add(1)
		p.ocspMu.Lock()
		clear(p.ocsp)
		p.ocspMu.Unlock()
		return
	}
	p.invalidateKey(serial.Text(16))
}

// invalidateKey drops the cached OCSP answers of the serial whose hex is
// key.
func (p *publisher) invalidateKey(key string) {
	p.rev.Add(1)
	p.ocspMu.Lock()
	delete(p.ocsp, key)
	p.ocspMu.Unlock()
}

// revoked publishes a revocation made through the Manager: a new CRL is
// signed before Revoke returns, and the serial's cached OCSP answer is
// dropped.
func (p *publisher) revoked(ctx context.Context, serial *big.Int) {
	p.invalidate(serial)
	if _, err := p.refresh(ctx); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		p.h.m.s.logger.Warn("ca: signing the CRL after a revocation failed", "provider", p.h.p.Name(), "error", err)
	}
}

// current returns the CRL state, signing one when there is none or it is
// past its NextUpdate, and starting a background re-sign when its
// refresh time has passed.
func (p *publisher) current(ctx context.Context) (*crlState, error) {
	now := p.h.m.s.now()
	st := p.state.Load()
	if st == nil || (!st.nextUpdate.IsZero() && !now.Before(st.nextUpdate)) {
		return p.refresh(ctx)
	}
	if !now.Before(st.refreshAt) && p.refreshing.CompareAndSwap(false, true) {
		h := p.h
		if m := h.m; m != nil {
			// Hold a reference so the provider is not closed under the
			// background signing.
			m.mu.Lock()
			h.refs++
			m.mu.Unlock()
			go func() {
				defer m.release(h)
				defer p.refreshing.Store(false)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				if _, err := p.refresh(ctx); err != nil {
					m.s.logger.Warn("ca: refreshing the CRL failed; serving the previous one", "provider", h.p.Name(), "error", err)
				}
			}()
		}
	}
	return st, nil
}

// refresh signs (or fetches) the CRLs now.
func (p *publisher) refresh(ctx context.Context) (*crlState, error) {
	p.signMu.Lock()
	defer p.signMu.Unlock()
	crls, err := provider.CRLs(ctx, p.h.p)
	if err != nil {
		return nil, fmt.Errorf("ca: CRL of %s: %w", p.h.p.Name(), err)
	}
	if len(crls) == 0 || crls[0] == nil || len(crls[0].Raw) == 0 {
		return nil, fmt.Errorf("ca: provider %s returned no CRL", p.h.p.Name())
	}
	st := &crlState{crls: crls, der: crls[0].Raw, index: map[string]x509.RevocationListEntry{}}
	for _, c := range crls {
		st.pem = append(st.pem, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.Raw})...)
		for _, e := range c.RevokedCertificateEntries {
			if e.SerialNumber != nil {
				st.index[e.SerialNumber.Text(16)] = e
			}
		}
	}
	sum := sha256.Sum256(st.der)
	st.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	st.thisUpdate, st.nextUpdate = crls[0].ThisUpdate, crls[0].NextUpdate
	if st.nextUpdate.IsZero() {
		st.refreshAt = p.h.m.s.now().Add(time.Hour)
	} else {
		st.refreshAt = st.thisUpdate.Add(st.nextUpdate.Sub(st.thisUpdate) / crlRefreshFraction)
	}
	p.state.Store(st)
	p.rev.Add(1)
	return st, nil
}

// lookup reports whether serial is on the current CRL.
func (st *crlState) lookup(serial *big.Int) (x509.RevocationListEntry, bool) {
	e, ok := st.index[serial.Text(16)]
	return e, ok
}
