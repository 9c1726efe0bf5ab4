package rootca

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"regexp"
	"strconv"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// ErrLeavesRemain is matched by the *RemainingLeavesError RetirePrevious
// returns when the previous CA still has unexpired, unrevoked leaves. It
// is provider.ErrLeavesRemain.
var ErrLeavesRemain = provider.ErrLeavesRemain

// RemainingLeavesError is RetirePrevious's refusal to retire a CA whose
// leaves are still in use.
type RemainingLeavesError struct {
	// Generation is the CA generation that was not retired.
	Generation int
	// Serials are its unexpired, unrevoked leaves, in increasing order of
	// NotAfter.
	Serials []*big.Int
}

func (e *RemainingLeavesError) Error() string {
	return fmt.Sprintf("rootca: CA generation %d still has %d unexpired, unrevoked certificates (renew them from the new CA, revoke them, or retire with Force)",
		e.Generation, len(e.Serials))
}

// Unwrap returns ErrLeavesRemain.
func (e *RemainingLeavesError) Unwrap() error { return ErrLeavesRemain }

// RotateOptions configures BeginRotation. The zero value makes a
// successor like Create's default: a self-signed ECDSA P-256 root that
// lives ten years, named after the current CA.
type RotateOptions struct {
	// KeyAlgorithm and KeySize choose the successor's key, as in
	// CreateOptions. Zero values mean ECDSA P-256.
	KeyAlgorithm provider.KeyAlgorithm
	KeySize      int

	// Subject is the successor's DN. If empty, the current CA's subject
	// with " G2" (" G3"...) after its common name, in place of a suffix
	// of that form, so that peers that find issuers by name (all of
	// them) tell the two CAs apart at a glance.
	Subject pkix.Name

	// Validity is the successor's validity. Zero means ten years.
	Validity time.Duration

	// Parent, if set, signs the successor as an intermediate, as
	// CreateOptions.Parent does. If nil, the successor is a self-signed
	// root.
	Parent *Issuer
}

// BeginRotation starts a CA rotation: it makes a successor CA (a new key,
// encrypted under Options.Password, and its certificate) and stores it as
// the next generation. From then on:
//
//   - the successor issues every new certificate (Issue and Renew): the
//     switch happens at BeginRotation, there is no separate activation;
//   - CACertificates, the bundle of libvirt's cacert.pem, QEMU's
//     ca-cert.pem and cloud.jks, lists the successor's chain first, then
//     the previous CA's;
//   - VerifyPeer accepts leaves of both CAs, and revocation works for
//     both;
//   - SignCRL signs with the successor, SignCRLs (and CRLs) with each.
//
// Push the new bundle to every peer at once, before the hosts are given
// successor certificates: a peer whose bundle holds only the previous CA
// refuses them. Then renew every certificate (from the successor), and
// retire the previous CA with RetirePrevious.
//
// The rotation is state of the store, so it survives restarts, and CAs
// sharing the store (other management servers) pick it up within
// Options.RevocationPollInterval (they poll the store's GenerationStamp
// with the revocations; Refresh and SignCRL pick it up at once). Of
// several CAs beginning a rotation at once, on one store or several
// sharing a database, exactly one succeeds; the others get
// ErrRotationInProgress, as does a rotation begun before the previous CA
// is retired.
//
// The store must be a RotationStore (MemStore and sqlstore.Store are),
// else the error matches errors.ErrUnsupported. So must the key: a CA
// whose key is held outside the store (Options.Signer) cannot rotate yet.
func (ca *CA) BeginRotation(ctx context.Context, opts *RotateOptions) (*x509.Certificate, error) {
	if ca.rot == nil {
		return nil, fmt.Errorf("rootca: begin rotation: the store keeps one CA only: %w", errors.ErrUnsupported)
	}
	if ca.opts.Password == nil || ca.opts.Signer != nil {
		return nil, fmt.Errorf("rootca: begin rotation: the CA key is held outside the store (Options.Signer): %w", errors.ErrUnsupported)
	}
	if err := ca.refreshGenerations(ctx); err != nil {
		return nil, err
	}
	cur := ca.auth.Load()
	if len(cur.previous) > 0 {
		return nil, fmt.Errorf("%w (retire generation %d first)", ErrRotationInProgress, cur.previous[0].number)
	}
	var o RotateOptions
	if opts != nil {
		o = *opts
	}
	next := cur.current.number + 1
	co := &CreateOptions{
		Options:      ca.opts,
		KeyAlgorithm: o.KeyAlgorithm,
		KeySize:      o.KeySize,
		Subject:      o.Subject,
		Validity:     o.Validity,
		Parent:       o.Parent,
	}
	if len(co.Subject.ToRDNSequence()) == 0 {
		co.Subject = successorSubject(cur.current.cert.Subject, next)
	}
	auth, key, err := ca.newAuthority(co)
	if err != nil {
		return nil, err
	}
	if err := ca.rot.AddGeneration(ctx, &Generation{Number: next, Authority: *auth}); err != nil {
		if errors.Is(err, ErrRotationInProgress) {
			// Another server began first: use its successor.
			_ = ca.refreshGenerations(ctx)
		}
		return nil, err // the store's errors name the step
	}
	if err := ca.reloadGenerations(ctx, key); err != nil {
		return nil, err
	}
	cert := ca.auth.Load().current.cert
	if l := ca.opts.Logger; l != nil {
		l.LogAttrs(ctx, slog.LevelInfo, "rootca: CA rotation begun",
			slog.Int("generation", next), slog.String("subject", cert.Subject.String()),
			slog.String("serial", provider.FormatSerial(cert.SerialNumber)))
	}
	return cert, nil
}

var generationSuffix = regexp.MustCompile(` G[0-9]+$`)

// successorSubject is subject with " G<n>" after the common name.
func successorSubject(subject pkix.Name, n int) pkix.Name {
	s := subject
	s.Names, s.ExtraNames = nil, nil
	cn := generationSuffix.ReplaceAllString(subject.CommonName, "")
	if cn == "" {
		cn = "kvmpki root CA"
	}
	s.CommonName = cn + " G" + strconv.Itoa(n)
	return s
}

// RetireOptions configures RetirePrevious. The zero value refuses to
// retire a CA whose leaves are still in use.
type RetireOptions struct {
	// Force retires the previous CA even though it still has unexpired,
	// unrevoked leaves. Those leaves stop being trusted at once by this
	// CA's VerifyPeer (and by other CAs sharing the store within their
	// poll interval), and by every peer once it has the new bundle: the
	// hosts holding them cannot connect until they get a certificate
	// from the new CA. Their records stay valid in the inventory (they
	// are not revoked, and no CRL is signed for the retired CA any more),
	// so renewal (Renew) from the new CA still works for them.
	Force bool
}

// RetireResult reports what RetirePrevious did.
type RetireResult struct {
	// Retired are the CA certificates retired (one, after a rotation).
	Retired []*x509.Certificate
	// Abandoned are the unexpired, unrevoked leaves of the retired CAs
	// that a forced retirement left untrusted; empty otherwise.
	Abandoned []*big.Int
}

// RetirePrevious ends a rotation: the previous CA leaves the bundle
// (CACertificates), VerifyPeer refuses its leaves, and no CRL is signed
// for it any more. It refuses (a *RemainingLeavesError, matching
// ErrLeavesRemain) while that CA has unexpired, unrevoked leaves in the
// inventory, unless opts.Force; without a rotation in progress it returns
// an error matching ErrNotRetirable. A nil opts means the zero
// RetireOptions.
//
// Other CAs sharing the store drop the previous CA within
// Options.RevocationPollInterval. Push the new bundle to the peers
// afterwards, so that they refuse the previous CA's leaves too.
func (ca *CA) RetirePrevious(ctx context.Context, opts *RetireOptions) (*RetireResult, error) {
	if ca.rot == nil {
		return nil, fmt.Errorf("rootca: retire: the store keeps one CA only: %w", errors.ErrUnsupported)
	}
	var o RetireOptions
	if opts != nil {
		o = *opts
	}
	if err := ca.refreshGenerations(ctx); err != nil {
		return nil, err
	}
	cur := ca.auth.Load()
	if len(cur.previous) == 0 {
		return nil, fmt.Errorf("%w (no rotation in progress)", ErrNotRetirable)
	}
	leaves, err := ca.liveLeaves(ctx)
	if err != nil {
		return nil, err
	}
	res := &RetireResult{}
	for _, g := range cur.previous {
		if serials := leaves[g.number]; len(serials) > 0 {
			if !o.Force {
				return nil, &RemainingLeavesError{Generation: g.number, Serials: serials}
			}
			res.Abandoned = append(res.Abandoned, serials...)
		}
	}
	now := ca.opts.now().UTC()
	for _, g := range cur.previous {
		if err := ca.rot.RetireGeneration(ctx, g.number, now); err != nil {
			return nil, err
		}
		res.Retired = append(res.Retired, g.cert)
		if l := ca.opts.Logger; l != nil {
			level := slog.LevelInfo
			if len(leaves[g.number]) > 0 {
				level = slog.LevelWarn
			}
			l.LogAttrs(ctx, level, "rootca: CA retired",
				slog.Int("generation", g.number), slog.String("subject", g.cert.Subject.String()),
				slog.Int("abandoned_certificates", len(leaves[g.number])))
		}
	}
	if err := ca.reloadGenerations(ctx, nil); err != nil {
		return nil, err
	}
	return res, nil
}

// AuthorityStatus is one CA generation as RotationStatus reports it.
type AuthorityStatus struct {
	// Generation is 1 for the CA Create made, then 2, 3...
	Generation int
	// Certificate is the generation's issuing certificate.
	Certificate *x509.Certificate
	// Issuing is set for the generation that issues (the newest).
	Issuing bool
	// RetiredAt is when the generation was retired; zero while peers
	// trust it.
	RetiredAt time.Time
	// Leaves counts its unexpired, unrevoked certificates in the
	// inventory.
	Leaves int
}

// RotationStatus reports every CA generation of the store, oldest first,
// read from the store now. A rotation is in progress when more than one
// is not retired. On a store that is not a RotationStore it reports the
// one CA.
func (ca *CA) RotationStatus(ctx context.Context) ([]AuthorityStatus, error) {
	gens := []Generation{{Number: 1}}
	if ca.rot != nil {
		var err error
		if gens, err = ca.rot.Generations(ctx); err != nil {
			return nil, fmt.Errorf("rootca: rotation status: %w", err)
		}
	}
	leaves, err := ca.liveLeavesOf(ctx, gens)
	if err != nil {
		return nil, err
	}
	out := make([]AuthorityStatus, len(gens))
	for i, g := range gens {
		var cert *x509.Certificate
		if g.Certificates == nil {
			cert = ca.auth.Load().current.cert
		} else if cert, err = x509.ParseCertificate(g.Certificates[0]); err != nil {
			return nil, fmt.Errorf("rootca: rotation status: CA generation %d: %w", g.Number, err)
		}
		out[i] = AuthorityStatus{Generation: g.Number, Certificate: cert, Issuing: i == len(gens)-1,
			RetiredAt: g.RetiredAt, Leaves: len(leaves[g.Number])}
	}
	return out, nil
}

// liveLeaves returns the unexpired, unrevoked leaves of the trusted
// generations, by generation.
func (ca *CA) liveLeaves(ctx context.Context) (map[int][]*big.Int, error) {
	var gens []Generation
	for _, g := range ca.auth.Load().trusted() {
		gens = append(gens, Generation{Number: g.number, Authority: Authority{Certificates: [][]byte{g.cert.Raw}}})
	}
	return ca.liveLeavesOf(ctx, gens)
}

// liveLeavesOf returns the unexpired, unrevoked leaves of each generation
// in gens, by generation number. A leaf belongs to the generation whose
// key identifier its authority key identifier is and whose subject is its
// issuer. It reads the whole inventory of valid certificates once.
func (ca *CA) liveLeavesOf(ctx context.Context, gens []Generation) (map[int][]*big.Int, error) {
	type issuer struct {
		number      int
		subject, id []byte
	}
	var issuers []issuer
	for _, g := range gens {
		der := ca.auth.Load().current.cert.Raw // a store of one CA
		if len(g.Certificates) > 0 {
			der = g.Certificates[0]
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("rootca: CA generation %d: %w", g.Number, err)
		}
		issuers = append(issuers, issuer{g.Number, c.RawSubject, c.SubjectKeyId})
	}
	valid := provider.StatusValid
	recs, err := ca.store.ListCertificates(ctx, &provider.ListOptions{Status: &valid})
	if err != nil {
		return nil, fmt.Errorf("rootca: list certificates: %w", err)
	}
	now := ca.opts.now()
	out := map[int][]*big.Int{}
	for _, rec := range recs {
		if !rec.NotAfter.After(now) {
			continue
		}
		leaf, err := x509.ParseCertificate(rec.Raw)
		if err != nil {
			return nil, fmt.Errorf("rootca: stored certificate %s: %w", provider.FormatSerial(rec.Serial), err)
		}
		for _, is := range issuers {
			if bytes.Equal(leaf.RawIssuer, is.subject) && bytes.Equal(leaf.AuthorityKeyId, is.id) {
				out[is.number] = append(out[is.number], rec.Serial)
				break
			}
		}
	}
	return out, nil
}
