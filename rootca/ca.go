package rootca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/kvmpki/kvmpki/provider"
)

// CA is the built-in certificate authority. It is safe for concurrent use.
type CA struct {
	opts  Options
	store Store // the caller's: never closed here

	// auth is the CA's generations: the one that issues and the
	// previous ones peers still trust (see BeginRotation). It is
	// replaced whole when a rotation changes them.
	auth  atomic.Pointer[authSet]
	rot   RotationStore // ca.store if it is one, else nil
	genMu sync.Mutex    // serialises replacements of auth

	revoked revocationSet
	sync    revocationSync
	crlMu   sync.Mutex // serialises CRL signing, so numbers follow time order

	closeOnce sync.Once
}

var (
	_ provider.Provider     = (*CA)(nil)
	_ provider.CRLSigner    = (*CA)(nil)
	_ provider.CRLSource    = (*CA)(nil)
	_ provider.PeerVerifier = (*CA)(nil)
	_ provider.Renewer      = (*CA)(nil)
	_ provider.Inventory    = (*CA)(nil)
)

// Open loads the CA held in store. When the store holds none it fails
// with an error matching provider.ErrNotFound, and creates nothing: a
// server pointed at a wrong or empty database must not mint a new root.
// Make the CA once with Create. A nil opts means the zero Options, which
// fails for lack of a key source.
//
// The caller owns store: the CA uses it until Close, and never closes it.
// Close the CA first, then the store.
func Open(ctx context.Context, store Store, opts *Options) (*CA, error) {
	ca, err := newCA(store, opts)
	if err != nil {
		return nil, err
	}
	auth, err := store.LoadAuthority(ctx)
	if errors.Is(err, provider.ErrNotFound) {
		return nil, fmt.Errorf("rootca: open CA: %w (make the CA once with Create)", err)
	}
	if err != nil {
		return nil, err
	}
	return ca.start(ctx, auth, nil)
}

// Create makes a CA, a self-signed root or with CreateOptions.Parent an
// intermediate, stores it in store, which must hold none, and returns it
// ready for use, as Open would. Call it once, when a deployment is set up;
// every later start calls Open.
//
// If store already holds a CA, Create fails with ErrAuthorityExists and
// changes nothing. The store decides atomically: of several processes
// creating a CA in one database at once, exactly one succeeds and the
// others get ErrAuthorityExists. A nil opts means the zero
// CreateOptions, which fails for lack of a key source.
//
// The caller owns store, as with Open.
func Create(ctx context.Context, store Store, opts *CreateOptions) (*CA, error) {
	var o CreateOptions
	if opts != nil {
		o = *opts
	}
	ca, err := newCA(store, &o.Options)
	if err != nil {
		return nil, err
	}
	if o.Parent != nil && (o.Parent.Certificate == nil || o.Parent.Signer == nil) {
		return nil, errors.New("rootca: CreateOptions.Parent needs a certificate and a signer")
	}
	// key is the CA key made here, so that a password callback is asked
	// once only.
	auth, key, err := ca.create(ctx, &o)
	if err != nil {
		return nil, err
	}
	return ca.start(ctx, auth, key)
}

// newCA checks the options common to Open and Create.
func newCA(store Store, opts *Options) (*CA, error) {
	if store == nil {
		return nil, errors.New("rootca: nil store")
	}
	ca := &CA{store: store}
	if opts != nil {
		ca.opts = *opts
	}
	ca.opts.ReservedDNSNames = append([]string(nil), ca.opts.ReservedDNSNames...)
	if ca.opts.Signer == nil && ca.opts.Password == nil {
		return nil, errors.New("rootca: options give neither Password nor Signer for the CA key")
	}
	return ca, nil
}

// start installs the stored CA material (every generation peers trust,
// on a RotationStore), learns the store's revocations and starts
// watching for more. key, if set, is the key Create made for auth.
func (ca *CA) start(ctx context.Context, auth *Authority, key crypto.Signer) (*CA, error) {
	ca.rot, _ = ca.store.(RotationStore)
	gens := []Generation{{Number: 1, Authority: *auth}}
	var stamp int64
	if ca.rot != nil {
		var err error
		if stamp, err = ca.rot.GenerationStamp(ctx); err != nil {
			return nil, err
		}
		if gens, err = ca.rot.Generations(ctx); err != nil {
			return nil, err
		}
	}
	set, err := ca.newAuthSet(gens, stamp, nil, key)
	if err != nil {
		return nil, err
	}
	ca.auth.Store(set)
	ca.sync.feed, _ = ca.store.(RevocationFeed)
	if err := ca.catchUp(ctx); err != nil {
		return nil, err
	}
	ca.startWatching()
	return ca, nil
}

// Close stops the CA's background work (the watch of its store for other
// CAs' revocations, see Options.RevocationPollInterval), and waits for it
// to end. It does not close the store, which the caller owns. Calling it
// again does nothing and returns nil. A closed CA must not be used.
func (ca *CA) Close() error {
	ca.closeOnce.Do(func() {
		ca.stopWatching()
		ca.revoked.notify.close() // after the watch, which may still notify
	})
	return nil
}

// Factory returns a provider.Factory that opens the CA held in store (see
// Open), for registration in a provider.Registry. The provider it makes
// is a *CA: close it when done, to stop its watch of the store. The
// caller keeps owning store.
func Factory(store Store, opts *Options) provider.Factory {
	return func(ctx context.Context) (provider.Provider, error) {
		return Open(ctx, store, opts)
	}
}

func (ca *CA) password() ([]byte, error) {
	pw, err := ca.opts.Password()
	if err != nil {
		return nil, fmt.Errorf("rootca: CA key password: %w", err)
	}
	if len(pw) == 0 {
		return nil, errors.New("rootca: empty CA key password")
	}
	// Work on a copy that can be cleared: the callback may hand out the
	// caller's own buffer every time.
	return bytes.Clone(pw), nil
}

// create makes the CA's key and certificate and stores them.
func (ca *CA) create(ctx context.Context, o *CreateOptions) (*Authority, crypto.Signer, error) {
	auth, key, err := ca.newAuthority(o)
	if err != nil {
		return nil, nil, err
	}
	if err := ca.store.CreateAuthority(ctx, auth); err != nil {
		if errors.Is(err, ErrAuthorityExists) {
			return nil, nil, fmt.Errorf("rootca: create CA: %w (open it with Open)", err)
		}
		return nil, nil, err
	}
	return auth, key, nil
}

// newAuthority makes a CA key (or takes o.Signer) and its certificate, a
// root or signed by o.Parent, with the key encrypted under
// Options.Password unless it is o.Signer.
func (ca *CA) newAuthority(o *CreateOptions) (*Authority, crypto.Signer, error) {
	key := o.Signer
	if key == nil {
		var err error
		key, err = generateKey(o.rand(), o.KeyAlgorithm, o.KeySize, defaultCAKeyAlgorithm, defaultRSACAKeySize)
		if err != nil {
			return nil, nil, fmt.Errorf("rootca: CA key: %w", err)
		}
	}
	if err := checkPublicKey(key.Public()); err != nil {
		return nil, nil, fmt.Errorf("rootca: CA key: %w", err)
	}
	var (
		der   []byte
		chain [][]byte
		err   error
	)
	if o.Parent != nil {
		der, err = newIntermediate(o, key, o.Parent)
		if err == nil {
			chain = append(chain, der, o.Parent.Certificate.Raw)
			for _, c := range o.Parent.Chain {
				chain = append(chain, c.Raw)
			}
		}
	} else {
		der, err = newRootDER(o, key)
		chain = append(chain, der)
	}
	if err != nil {
		return nil, nil, err
	}
	auth := &Authority{Certificates: chain}
	if o.Signer == nil {
		pw, err := ca.password()
		if err != nil {
			return nil, nil, err
		}
		auth.Key, err = encryptKey(o.rand(), key, pw)
		clear(pw)
		if err != nil {
			return nil, nil, err
		}
	}
	return auth, key, nil
}

// loadGeneration parses and checks a stored generation and finds its
// key: key if it matches, else the stored key decrypted, else
// Options.Signer. issuing says whether the generation issues, which
// Options.Signer must then match.
func (ca *CA) loadGeneration(g *Generation, key crypto.Signer, issuing bool) (*generation, error) {
	if len(g.Certificates) == 0 {
		return nil, errors.New("rootca: stored CA has no certificate")
	}
	out := &generation{number: g.Number}
	for i, der := range g.Certificates {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("rootca: stored CA certificate %d: %w", i, err)
		}
		if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return nil, fmt.Errorf("rootca: stored certificate %d (%s) is not a CA", i, c.Subject)
		}
		out.chain = append(out.chain, c)
	}
	out.cert = out.chain[0]
	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range out.chain {
		if isSelfSigned(c) {
			roots.AddCert(c)
		} else {
			intermediates.AddCert(c)
		}
	}
	if _, err := out.cert.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: intermediates,
		CurrentTime: out.cert.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("rootca: stored CA chain does not verify: %w", err)
	}

	switch {
	case key != nil && samePublicKey(key.Public(), out.cert.PublicKey):
		out.signer = key
	case g.Key != nil:
		if ca.opts.Password == nil {
			return nil, errors.New("rootca: the stored CA key is encrypted: Options.Password is needed")
		}
		pw, err := ca.password()
		if err != nil {
			return nil, err
		}
		out.signer, err = decryptKey(g.Key, pw)
		clear(pw)
		if err != nil {
			return nil, err
		}
	case ca.opts.Signer != nil:
		out.signer = ca.opts.Signer
	default:
		return nil, errors.New("rootca: stored CA has no key and Options.Signer is nil")
	}
	if !samePublicKey(out.signer.Public(), out.cert.PublicKey) {
		return nil, errors.New("rootca: CA key does not match the CA certificate")
	}
	if issuing && ca.opts.Signer != nil && !samePublicKey(ca.opts.Signer.Public(), out.cert.PublicKey) {
		return nil, errors.New("rootca: Options.Signer does not match the stored CA certificate")
	}
	alg, err := signatureAlgorithmFor(out.signer.Public(), ca.opts.SignatureAlgorithm)
	if err != nil {
		return nil, err
	}
	out.sigAlg = alg
	return out, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return string(c.RawSubject) == string(c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// Name returns Options.Name, "root" by default.
func (ca *CA) Name() string { return ca.opts.name() }

// Description describes the provider.
func (ca *CA) Description() string {
	return "kvmpki built-in CA: the platform is its own certificate authority"
}

// Certificate returns the issuing CA certificate: during a rotation, the
// successor's.
func (ca *CA) Certificate() *x509.Certificate { return ca.auth.Load().current.cert }

// CACertificates returns the certificates peers must trust: the issuing
// certificate followed by its issuers up to the root, then, during a
// rotation (see BeginRotation), the previous CA's chain (its certificates
// not already listed), until it is retired.
func (ca *CA) CACertificates(ctx context.Context) ([]*x509.Certificate, error) {
	return slices.Clone(ca.auth.Load().bundle), nil
}

// LookupCertificate returns the inventory record of serial.
func (ca *CA) LookupCertificate(ctx context.Context, serial *big.Int) (*provider.CertificateRecord, error) {
	if err := checkSerial(serial); err != nil {
		return nil, err
	}
	return ca.store.Certificate(ctx, serial)
}

// ListCertificates lists the inventory.
func (ca *CA) ListCertificates(ctx context.Context, opts *provider.ListOptions) ([]*provider.CertificateRecord, error) {
	return ca.store.ListCertificates(ctx, opts)
}

// checkSerial refuses a serial that no certificate of this CA can have:
// nil, not positive, or longer than the 20 octets RFC 5280 allows.
func checkSerial(serial *big.Int) error {
	if serial == nil || serial.Sign() <= 0 || serial.BitLen() > 159 {
		return &provider.RequestError{Field: "serial", Reason: "missing, not positive or longer than 20 octets"}
	}
	return nil
}
