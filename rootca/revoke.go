package rootca

import (
	"context"
	"fmt"
	"log/slog"
	"math/big"
	"sync"

	"github.com/kvmpki/kvmpki/provider"
)

// revocationSet is the in-memory copy of the store's revocations, so that
// the check at every TLS handshake is a map lookup: O(1), no I/O.
type revocationSet struct {
	mu sync.RWMutex
	m  map[string]Revocation // key: big-endian serial bytes
}

func (s *revocationSet) lookup(serial *big.Int) (Revocation, bool) {
	// big.Int.Bytes allocates; FillBytes into a stack buffer does not.
	var buf [32]byte
	var key []byte
	if (serial.BitLen()+7)/8 <= len(buf) && serial.Sign() > 0 {
		key = serial.FillBytes(buf[:(serial.BitLen()+7)/8])
	} else {
		key = serial.Bytes()
	}
	s.mu.RLock()
	r, ok := s.m[string(key)]
	s.mu.RUnlock()
	return r, ok
}

func (s *revocationSet) add(r Revocation) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[string]Revocation)
	}
	s.m[string(r.Serial.Bytes())] = r
	s.mu.Unlock()
}

func (s *revocationSet) replace(all []Revocation) {
	m := make(map[string]Revocation, len(all))
	for _, r := range all {
		m[string(r.Serial.Bytes())] = r
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
}

func (s *revocationSet) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// reloadRevocations replaces the in-memory revocation set with the store's.
func (ca *CA) reloadRevocations(ctx context.Context) error {
	all, err := ca.store.Revocations(ctx)
	if err != nil {
		return fmt.Errorf("rootca: load revocations: %w", err)
	}
	ca.revoked.replace(all)
	return nil
}

// Refresh reloads the revocations from the store, to learn of revocations
// made by other processes sharing it. SignCRL refreshes too.
func (ca *CA) Refresh(ctx context.Context) error { return ca.reloadRevocations(ctx) }

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
	if req == nil || req.Serial == nil || req.Serial.Sign() <= 0 {
		return &provider.RequestError{Field: "serial", Reason: "missing or not positive"}
	}
	// removeFromCRL only exists in delta CRLs; this CA does not sign them.
	if !req.Reason.Valid() || req.Reason == provider.ReasonRemoveFromCRL {
		return &provider.RequestError{Field: "reason", Reason: fmt.Sprintf("%v is not a revocation reason", req.Reason)}
	}
	rev, err := ca.store.Revoke(ctx, req.Serial, req.Reason, ca.opts.now().UTC())
	if err != nil {
		return fmt.Errorf("rootca: revoke %s: %w", provider.FormatSerial(req.Serial), err)
	}
	ca.revoked.add(*rev)
	ca.opts.logger().LogAttrs(ctx, slog.LevelInfo, "rootca: revoked certificate",
		slog.String("serial", provider.FormatSerial(rev.Serial)), slog.String("reason", rev.Reason.String()))
	return nil
}
