package rootca

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
)

// generation is one CA of the store, ready to sign.
type generation struct {
	number int
	cert   *x509.Certificate   // the issuing certificate
	chain  []*x509.Certificate // cert, then its issuers up to the root
	signer crypto.Signer
	sigAlg x509.SignatureAlgorithm
}

// authSet is the CA's generations peers trust, as one immutable value.
type authSet struct {
	stamp    int64         // the RotationStore's GenerationStamp it was read at
	current  *generation   // the newest: it issues
	previous []*generation // older generations not retired, newest first
	anchors  *x509.CertPool
	bundle   []*x509.Certificate // CACertificates
}

// trusted returns the generations peers trust, the issuing one first.
func (s *authSet) trusted() []*generation {
	return append([]*generation{s.current}, s.previous...)
}

// newAuthSet builds the set of the generations in gens that are not
// retired. Generations prev already holds are taken from it, so that a
// key is decrypted once; key, if set, is the key of the generation whose
// certificate it matches.
func (ca *CA) newAuthSet(gens []Generation, stamp int64, prev *authSet, key crypto.Signer) (*authSet, error) {
	if len(gens) == 0 {
		return nil, fmt.Errorf("rootca: store returned no CA generation")
	}
	known := map[int]*generation{}
	if prev != nil {
		for _, g := range prev.trusted() {
			known[g.number] = g
		}
	}
	set := &authSet{stamp: stamp, anchors: x509.NewCertPool()}
	seen := map[string]bool{}
	for i := len(gens) - 1; i >= 0; i-- {
		g := &gens[i]
		issuing := i == len(gens)-1
		if !issuing && !g.RetiredAt.IsZero() {
			continue
		}
		loaded := known[g.Number]
		if loaded == nil {
			var err error
			if loaded, err = ca.loadGeneration(g, key, issuing); err != nil {
				if len(gens) > 1 {
					err = fmt.Errorf("rootca: CA generation %d: %w", g.Number, err)
				}
				return nil, err
			}
		}
		if issuing {
			set.current = loaded
		} else {
			set.previous = append(set.previous, loaded)
		}
		set.anchors.AddCert(loaded.cert)
		for _, c := range loaded.chain {
			if !seen[string(c.Raw)] {
				seen[string(c.Raw)] = true
				set.bundle = append(set.bundle, c)
			}
		}
	}
	return set, nil
}

// refreshGenerations rereads the generations when the store's stamp says
// they changed (another process began or ended a rotation).
func (ca *CA) refreshGenerations(ctx context.Context) error {
	if ca.rot == nil {
		return nil
	}
	stamp, err := ca.rot.GenerationStamp(ctx)
	if err != nil {
		return fmt.Errorf("rootca: read CA generations: %w", err)
	}
	if stamp == ca.auth.Load().stamp {
		return nil
	}
	return ca.reloadGenerations(ctx, nil)
}

// reloadGenerations rereads the generations from the store and installs
// them; key is a key just made for one of them.
func (ca *CA) reloadGenerations(ctx context.Context, key crypto.Signer) error {
	ca.genMu.Lock()
	defer ca.genMu.Unlock()
	stamp, err := ca.rot.GenerationStamp(ctx)
	if err != nil {
		return fmt.Errorf("rootca: read CA generations: %w", err)
	}
	old := ca.auth.Load()
	if stamp == old.stamp && key == nil {
		return nil
	}
	gens, err := ca.rot.Generations(ctx)
	if err != nil {
		return fmt.Errorf("rootca: read CA generations: %w", err)
	}
	set, err := ca.newAuthSet(gens, stamp, old, key)
	if err != nil {
		return err
	}
	ca.auth.Store(set)
	if l := ca.opts.Logger; l != nil && (set.current.number != old.current.number || len(set.previous) != len(old.previous)) {
		l.LogAttrs(ctx, slog.LevelInfo, "rootca: CA generations changed",
			slog.Int("issuing", set.current.number), slog.Int("trusted", 1+len(set.previous)))
	}
	return nil
}

// newKeyIterations is the PBKDF2 iteration count of the keys encryptKey
// writes: keyIterations, which the tests of rotation lower (a stored key
// records its count, so keys written with either decrypt alike).
var newKeyIterations = keyIterations
