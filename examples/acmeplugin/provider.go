package main

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

	// CACertificates is the chain peers trust: the CA certificate that
	// issues this account's certificates, then its issuers up to the
	// self-signed root. ACME has no request for it, so the operator
	// configures it (Let's Encrypt publishes its chain; Pebble serves it
	// on its management port). Required. Every certificate the CA
	// returns is checked against it.
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
	chain   []*x509.Certificate
	roots   *x509.CertPool
	inter   *x509.CertPool
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
		return nil, errors.New("acmeplugin: nil Config")
	}
	switch {
	case cfg.DirectoryURL == "":
		return nil, errors.New("acmeplugin: Config.DirectoryURL is required")
	case cfg.AccountKey == nil:
		return nil, errors.New("acmeplugin: Config.AccountKey is required")
	case cfg.Solver == nil:
		return nil, errors.New("acmeplugin: Config.Solver is required")
	}
	role := cfg.Role
	if role == provider.RoleUnspecified {
		role = provider.RoleHost
	}
	if !role.Valid() {
		return nil, fmt.Errorf("acmeplugin: Config.Role %v is not host, client or server", cfg.Role)
	}
	chain, roots, inter, err := checkChain(cfg.CACertificates)
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
		return nil, fmt.Errorf("acmeplugin: register the account: %w", mapError(err))
	}
	return &Provider{
		name: name, client: client, chain: chain, roots: roots, inter: inter,
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

// checkChain checks that certs is a chain from an issuing CA up to a
// self-signed root.
func checkChain(certs []*x509.Certificate) (chain []*x509.Certificate, roots, inter *x509.CertPool, err error) {
	if len(certs) == 0 {
		return nil, nil, nil, errors.New("acmeplugin: Config.CACertificates is required")
	}
	roots, inter = x509.NewCertPool(), x509.NewCertPool()
	for i, c := range certs {
		if c == nil {
			return nil, nil, nil, fmt.Errorf("acmeplugin: Config.CACertificates[%d] is nil", i)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, nil, nil, fmt.Errorf("acmeplugin: Config.CACertificates[%d] (%s) is not a CA", i, c.Subject)
		}
		last := i == len(certs)-1
		if last {
			if !bytes.Equal(c.RawIssuer, c.RawSubject) || c.CheckSignatureFrom(c) != nil {
				return nil, nil, nil, fmt.Errorf("acmeplugin: Config.CACertificates ends with %s, which is not a self-signed root", c.Subject)
			}
			roots.AddCert(c)
			continue
		}
		if err := c.CheckSignatureFrom(certs[i+1]); err != nil {
			return nil, nil, nil, fmt.Errorf("acmeplugin: Config.CACertificates[%d] (%s) is not signed by the next certificate: %w", i, c.Subject, err)
		}
		inter.AddCert(c)
	}
	return slices.Clone(certs), roots, inter, nil
}

// Name returns the registry name.
func (p *Provider) Name() string { return p.name }

// Description describes the provider.
func (p *Provider) Description() string {
	return "ACME (RFC 8555) CA at " + p.client.DirectoryURL
}

// CACertificates returns the configured chain: the issuing CA, then its
// issuers up to the root.
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

var errClosed = errors.New("acmeplugin: provider is closed")

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
