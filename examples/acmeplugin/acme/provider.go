package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"golang.org/x/crypto/acme"

	"github.com/kvmpki/kvmpki/provider"
)

// Config configures an ACME [Provider]. The zero value of each optional
// field is documented on it.
type Config struct {
	// Name is the registry name. If empty, "acme".
	Name string

	// DirectoryURL is the CA's ACME directory, such as
	// https://acme-v02.api.letsencrypt.org/directory. Required.
	DirectoryURL string

	// AccountKey is the ACME account key (ECDSA P-256 or RSA). New
	// registers it, or finds the account it already has. Required; it
	// is never logged.
	AccountKey crypto.Signer

	// Contact is the account's contact URLs ("mailto:ops@example.org").
	// If nil, none.
	Contact []string

	// HTTPClient talks to the CA. If nil, http.DefaultClient, which
	// trusts the system roots.
	HTTPClient *http.Client

	// CACertificates are the CA certificates peers trust: the CA
	// certificates that issue this account's certificates, each before
	// the issuers it chains to, up to self-signed roots. Let's Encrypt
	// issues from several intermediates (R10, R11, E5, E6): list every
	// one. ACME has no request for them, so the operator configures them
	// (Let's Encrypt publishes them; Pebble serves its chain on its
	// management port). Required. Every certificate the CA returns must
	// chain to them.
	CACertificates []*x509.Certificate

	// Role is the one role the CA's profile issues, fixed by its
	// extended key usages. If zero, provider.RoleHost (serverAuth and
	// clientAuth: Pebble 2.4, Let's Encrypt's classic profile); today's
	// Let's Encrypt default profile gives provider.RoleServer. Requests
	// for another role are refused with provider.Unsupported.
	Role provider.Role

	// Profile is the ACME issuance profile to order
	// (draft-ietf-acme-profiles). If empty, the CA's default.
	Profile string

	// Solver proves control of each identifier of an order. Required:
	// use an [*HTTP01Solver] mounted on port 80 of the names, or a DNS
	// solver of your own.
	Solver Solver

	// CSRPolicy is applied to requests and CSRs before anything is sent
	// to the CA. If nil, provider's strict default.
	CSRPolicy *provider.CSRPolicy
}

// Provider is a [provider.Provider] over an ACME (RFC 8555) CA, such as
// Let's Encrypt. It is safe for concurrent use.
//
// It issues a certificate for exactly the names of its CSR, in the role
// its CA's profile gives, for the validity the CA chooses; it revokes by
// certificate; and it judges TLS peers against its chain ([PeerVerifier])
// but knows only the revocations it made itself.
type Provider struct {
	name    string
	client  *acme.Client
	chain   []*x509.Certificate // Config.CACertificates
	roots   *x509.CertPool
	role    provider.Role
	profile string
	solver  Solver
	policy  *provider.CSRPolicy

	mu       sync.Mutex
	revoked  map[string]provider.RevocationReason // serial hex, revoked through this value
	closed   bool
	closeErr error
}

var (
	_ provider.Provider     = (*Provider)(nil)
	_ provider.PeerVerifier = (*Provider)(nil)
)

// New checks cfg, registers the account key with the CA (or finds its
// existing account) and returns a provider. Close it when done.
func New(ctx context.Context, cfg *Config) (*Provider, error) {
	if cfg == nil {
		return nil, errors.New("acme: nil Config")
	}
	switch {
	case cfg.DirectoryURL == "":
		return nil, errors.New("acme: Config.DirectoryURL is required")
	case cfg.AccountKey == nil:
		return nil, errors.New("acme: Config.AccountKey is required")
	case cfg.Solver == nil:
		return nil, errors.New("acme: Config.Solver is required")
	}
	role := cfg.Role
	if role == provider.RoleUnspecified {
		role = provider.RoleHost
	}
	if !role.Valid() {
		return nil, fmt.Errorf("acme: Config.Role %v is not host, client or server", cfg.Role)
	}
	chain, roots, err := checkChain(cfg.CACertificates)
	if err != nil {
		return nil, err
	}
	name := cfg.Name
	if name == "" {
		name = defaultName
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	client := &acme.Client{Key: cfg.AccountKey, DirectoryURL: cfg.DirectoryURL, HTTPClient: hc, UserAgent: userAgent}
	acct := &acme.Account{Contact: slices.Clone(cfg.Contact)}
	if _, err := client.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("acme: register the account: %w", mapError(err))
	}
	return &Provider{
		name: name, client: client, chain: chain, roots: roots,
		role: role, profile: cfg.Profile, solver: cfg.Solver, policy: cfg.CSRPolicy,
		revoked: make(map[string]provider.RevocationReason),
	}, nil
}

// Factory returns a [provider.Factory] for cfg, to register in the
// platform's [provider.Registry] under cfg.Name.
func Factory(cfg Config) provider.Factory {
	cfg.CACertificates = slices.Clone(cfg.CACertificates)
	cfg.Contact = slices.Clone(cfg.Contact)
	return func(ctx context.Context) (provider.Provider, error) {
		return New(ctx, &cfg)
	}
}

// checkChain checks that certs are CA certificates, each but a
// self-signed root signed by one listed after it, so that every issuing
// CA chains to a root among them.
func checkChain(certs []*x509.Certificate) (chain []*x509.Certificate, roots *x509.CertPool, err error) {
	if len(certs) == 0 {
		return nil, nil, errors.New("acme: Config.CACertificates is required")
	}
	roots = x509.NewCertPool()
	for i, c := range certs {
		if c == nil {
			return nil, nil, fmt.Errorf("acme: Config.CACertificates[%d] is nil", i)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, nil, fmt.Errorf("acme: Config.CACertificates[%d] (%s) is not a CA", i, c.Subject)
		}
		if isRoot(c) {
			roots.AddCert(c)
			continue
		}
		if signerOf(c, certs[i+1:]) == nil {
			return nil, nil, fmt.Errorf("acme: Config.CACertificates[%d] (%s) is signed by no certificate listed after it", i, c.Subject)
		}
	}
	return slices.Clone(certs), roots, nil
}

func isRoot(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// signerOf returns the certificate of cas that signed c, or nil.
func signerOf(c *x509.Certificate, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// chainOf returns the configured CA certificates from the issuer of c up
// to its root, the IssueResult.Chain of c, or nil when none of them
// issued c.
func (p *Provider) chainOf(c *x509.Certificate) []*x509.Certificate {
	var chain []*x509.Certificate
	for len(chain) <= len(p.chain) {
		ca := signerOf(c, p.chain)
		if ca == nil {
			return nil
		}
		chain = append(chain, ca)
		if isRoot(ca) {
			return chain
		}
		c = ca
	}
	return nil
}

// intermediates returns the configured CA certificates that are not
// roots.
func (p *Provider) intermediates() []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range p.chain {
		if !isRoot(c) {
			out = append(out, c)
		}
	}
	return out
}

// Name returns the registry name.
func (p *Provider) Name() string { return p.name }

// Description describes the provider.
func (p *Provider) Description() string {
	return "ACME (RFC 8555) CA at " + p.client.DirectoryURL
}

// CACertificates returns the configured CA certificates
// (Config.CACertificates): the issuing CAs, each before its issuers, up to
// the roots.
func (p *Provider) CACertificates(ctx context.Context) ([]*x509.Certificate, error) {
	if err := p.check(ctx); err != nil {
		return nil, err
	}
	return slices.Clone(p.chain), nil
}

// Close marks the provider closed; later calls fail. It holds no
// connection of its own (the HTTP client is the caller's). Calling it
// again returns the first result.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return p.closeErr
}

var errClosed = errors.New("acme: provider is closed")

// check fails once the provider is closed or ctx is done.
func (p *Provider) check(ctx context.Context) error {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return errClosed
	}
	return ctx.Err()
}
