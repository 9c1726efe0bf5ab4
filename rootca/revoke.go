package rootca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// revocationSet is the in-memory copy of the store's revocations, so that
// the check at every TLS handshake is a map lookup (O(1), no I/O) and a CRL
// is built without reading the store.
type revocationSet struct {
	mu   sync.RWMutex
	m    map[string]Revocation // key: big-endian serial bytes
	list []Revocation          // the same, in order of revocation time

	// notify tells subscribers when the set grows (notify.go).
	notify notifier
}

func (s *revocationSet) lookup(serial *big.Int) (Revocation, bool) {
	// big.Int.Bytes allocates; FillBytes into a stack buffer does not.
	var buf [32]byte
	var key []byte
	if n := (serial.BitLen() + 7) / 8; n <= len(buf) && serial.Sign() > 0 {
		key = serial.FillBytes(buf[:n])
	} else {
		key = serial.Bytes()
	}
	s.mu.RLock()
	r, ok := s.m[string(key)]
	s.mu.RUnlock()
	return r, ok
}

func (s *revocationSet) add(r Revocation) {
	key := string(r.Serial.Bytes())
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[string]Revocation)
	}
	if _, dup := s.m[key]; dup {
		s.mu.Unlock()
		return
	}
	s.m[key] = r
	s.list = append(s.list, r)
	s.mu.Unlock()
	s.notify.fire()
}

// merge adds the revocations in all that the set lacks. Revocations are
// never undone, so a snapshot read from the store before a concurrent
// Revoke must not drop that revocation: the set only grows.
func (s *revocationSet) merge(all []Revocation) {
	if s.grow(all) {
		s.notify.fire()
	}
}

// grow is merge, reporting whether the set grew.
func (s *revocationSet) grow(all []Revocation) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]Revocation, len(all))
	}
	byTime := func(a, b Revocation) int { return a.RevokedAt.Compare(b.RevokedAt) }
	start := len(s.list)
	for _, r := range all {
		key := string(r.Serial.Bytes())
		if _, dup := s.m[key]; !dup {
			s.m[key] = r
			s.list = append(s.list, r)
		}
	}
	// A poll usually brings a few revocations newer than all the others:
	// then the list is still in order, and is not sorted again.
	if len(s.list) > start && !slices.IsSortedFunc(s.list[max(start-1, 0):], byTime) {
		slices.SortStableFunc(s.list, byTime)
	}
	return len(s.list) > start
}

// entries returns the CRL entries of the revocations whose certificate has
// not expired before now (all of them if keepExpired).
func (s *revocationSet) entries(now time.Time, keepExpired bool) []x509.RevocationListEntry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]x509.RevocationListEntry, 0, len(s.list))
	for i := range s.list {
		r := &s.list[i]
		if !keepExpired && r.NotAfter.Before(now) {
			continue
		}
		out = append(out, x509.RevocationListEntry{
			SerialNumber:   r.Serial,
			RevocationTime: r.RevokedAt.UTC().Truncate(time.Second),
			ReasonCode:     int(r.Reason),
		})
	}
	return out
}

// Refresh adds to the in-memory revocation set the revocations other
// processes sharing the store have made since the last refresh. A CA on a
// store that is a RevocationFeed does so in the background anyway (see
// Options.RevocationPollInterval); Refresh is for a caller that must know
// now.
func (ca *CA) Refresh(ctx context.Context) error { return ca.catchUp(ctx) }

// IsRevoked reports whether serial is revoked, with the revocation. It
// consults memory only: O(1).
func (ca *CA) IsRevoked(serial *big.Int) (Revocation, bool) {
	if serial == nil {
		return Revocation{}, false
	}
	return ca.revoked.lookup(serial)
}

// Revoke revokes an issued certificate. An unknown serial yields an error
// matching provider.ErrNotFound, a second revocation
// provider.ErrAlreadyRevoked. The revocation is in the store when Revoke
// returns, and every later handshake verified by this CA refuses the
// certificate.
func (ca *CA) Revoke(ctx context.Context, req *provider.RevokeRequest) error {
	// The serial, or that of req.Certificate when Serial is nil.
	serial, err := req.SerialNumber()
	if err != nil {
		return err
	}
	if err := checkSerial(serial); err != nil {
		return err
	}
	// removeFromCRL only exists in delta CRLs; this CA does not sign them.
	if !req.Reason.Valid() || req.Reason == provider.ReasonRemoveFromCRL {
		return &provider.RequestError{Field: "reason", Reason: fmt.Sprintf("%v is not a revocation reason", req.Reason)}
	}
	rev, err := ca.store.Revoke(ctx, serial, req.Reason, ca.opts.now().UTC())
	if errors.Is(err, provider.ErrAlreadyRevoked) {
		// Perhaps another process revoked it: make sure this one
		// refuses it from now on too.
		if rec, lerr := ca.store.Certificate(ctx, serial); lerr == nil && rec.Status == provider.StatusRevoked {
			ca.revoked.add(Revocation{Serial: rec.Serial, RevokedAt: rec.RevokedAt, Reason: rec.Reason, NotAfter: rec.NotAfter})
		}
	}
	if err != nil {
		return fmt.Errorf("rootca: revoke %s: %w", provider.FormatSerial(serial), err)
	}
	ca.revoked.add(*rev)
	if l := ca.opts.Logger; l != nil {
		l.LogAttrs(ctx, slog.LevelInfo, "rootca: revoked certificate",
			slog.String("serial", provider.FormatSerial(rev.Serial)), slog.String("reason", rev.Reason.String()))
	}
	return nil
}
