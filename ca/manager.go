package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// Manager is the management-plane framework around the configured
// [provider.Provider]: CloudStack's CAManager and CAService. It issues and
// revokes certificates, serves the CA bundle, CRL and OCSP, and builds the
// TLS configurations of the agent port, the agents and the cluster port.
// A Manager is safe for concurrent use.
type Manager struct {
	reg    *provider.Registry
	s      *settings
	active activeSet

	// provisioning holds the names of the hosts a Provision call is
	// provisioning now.
	provisioning sync.Map

	mu     sync.Mutex
	cur    *handle
	closed bool
}

// handle is one opened provider with its reference count: calls hold a
// reference for their duration, and a provider replaced by SetProvider is
// closed when the last one is released.
type handle struct {
	p provider.Provider
	m *Manager

	refs    int  // guarded by Manager.mu
	retired bool // guarded by Manager.mu

	caMu sync.Mutex
	cas  *caState // guarded by caMu

	pubOnce sync.Once
	pub     *publisher
}

// caState is the provider's CA certificates as last fetched.
type caState struct {
	certs   []*x509.Certificate
	pool    *x509.CertPool
	pem     []byte
	fetched time.Time
}

// New opens the provider named by s.Provider from reg and returns a
// Manager around it. Bad settings are refused with a *[SettingError]; a
// provider that cannot be opened, or returns no CA certificates, is an
// error. s may be nil for the defaults. Close the Manager to close the
// provider.
func New(ctx context.Context, reg *provider.Registry, s *Settings) (*Manager, error) {
	if reg == nil {
		return nil, errNilRegistry
	}
	st, err := checkSettings(s)
	if err != nil {
		return nil, err
	}
	m := &Manager{reg: reg, s: st}
	h, err := m.open(ctx, st.provider)
	if err != nil {
		return nil, err
	}
	m.cur = h
	return m, nil
}

func (m *Manager) open(ctx context.Context, name string) (*handle, error) {
	p, err := m.reg.Open(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	h := &handle{p: p, m: m}
	if _, err := h.caCerts(ctx, true); err != nil {
		if cerr := p.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return h, nil
}

// SetProvider opens the provider registered under name and makes it the
// one every new call uses; calls and handshakes already running finish on
// the previous provider, which is closed when the last of them returns.
// No restart is needed (CloudStack needs one). On error the current
// provider stays.
//
// A provider with another CA invalidates the certificates the previous
// one issued, the management server's own included: renew the
// [Identity] (Identity.Renew) and re-provision the hosts.
func (m *Manager) SetProvider(ctx context.Context, name string) error {
	h, err := m.open(ctx, name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.Join(ErrClosed, h.p.Close())
	}
	old := m.cur
	m.cur = h
	old.retired = true
	closeOld := old.refs == 0
	m.mu.Unlock()
	m.s.logger.Info("ca: provider changed", "from", old.p.Name(), "to", name)
	if closeOld {
		return old.close()
	}
	return nil
}

func (h *handle) close() error {
	if h.pub != nil {
		h.pub.close()
	}
	if err := h.p.Close(); err != nil {
		return fmt.Errorf("ca: close provider %s: %w", h.p.Name(), err)
	}
	return nil
}

// acquire returns the current provider with a reference held; release it.
func (m *Manager) acquire() (*handle, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	m.cur.refs++
	return m.cur, nil
}

func (m *Manager) release(h *handle) {
	m.mu.Lock()
	h.refs--
	closeIt := h.retired && h.refs == 0
	m.mu.Unlock()
	if closeIt {
		if err := h.close(); err != nil {
			m.s.logger.Warn("ca: closing the replaced provider failed", "provider", h.p.Name(), "error", err)
		}
	}
}

// with runs fn on the current provider, holding a reference.
func (m *Manager) with(fn func(h *handle) error) error {
	h, err := m.acquire()
	if err != nil {
		return err
	}
	defer m.release(h)
	return fn(h)
}

// Close closes the current provider once the calls using it have
// returned. Calling it again does nothing.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	h := m.cur
	h.retired = true
	closeIt := h.refs == 0
	m.mu.Unlock()
	if closeIt {
		return h.close()
	}
	return nil
}

// ProviderName returns the name of the provider new calls use.
func (m *Manager) ProviderName() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur.p.Name()
}

// Providers lists the registered providers, name and description
// (CloudStack's listCAProviders).
func (m *Manager) Providers(ctx context.Context) ([]provider.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return m.reg.List(), nil
}

// caCerts returns the provider's CA certificates, fetched again when the
// cache is older than a minute or force is set. If a refetch fails and a
// previous answer exists, the previous answer is kept (and the failure
// logged): a provider's hiccup does not break every handshake.
func (h *handle) caCerts(ctx context.Context, force bool) (*caState, error) {
	h.caMu.Lock()
	defer h.caMu.Unlock()
	now := h.m.s.now()
	if h.cas != nil && !force && now.Sub(h.cas.fetched) < caRefreshInterval && !now.Before(h.cas.fetched) {
		return h.cas, nil
	}
	certs, err := h.p.CACertificates(ctx)
	if err == nil && len(certs) == 0 {
		err = fmt.Errorf("ca: provider %s returned no CA certificates", h.p.Name())
	}
	if err != nil {
		if h.cas != nil {
			h.m.s.logger.Warn("ca: refreshing CA certificates failed; keeping the previous ones", "provider", h.p.Name(), "error", err)
			return h.cas, nil
		}
		return nil, fmt.Errorf("ca: CA certificates of %s: %w", h.p.Name(), err)
	}
	st := &caState{certs: certs, pool: x509.NewCertPool(), pem: provider.EncodeCertificates(certs...), fetched: now}
	for _, c := range certs {
		st.pool.AddCert(c)
	}
	h.cas = st
	return st, nil
}

// CACertificates returns the current provider's CA certificates, issuing
// CA first.
func (m *Manager) CACertificates(ctx context.Context) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	err := m.with(func(h *handle) error {
		st, err := h.caCerts(ctx, false)
		if err != nil {
			return err
		}
		out = slices.Clone(st.certs)
		return nil
	})
	return out, err
}

// CABundle returns every CA certificate of the current provider as
// concatenated PEM blocks (CloudStack's listCaCertificate).
func (m *Manager) CABundle(ctx context.Context) ([]byte, error) {
	var out []byte
	err := m.with(func(h *handle) error {
		st, err := h.caCerts(ctx, false)
		if err != nil {
			return err
		}
		out = slices.Clone(st.pem)
		return nil
	})
	return out, err
}

// IssueRequest is CloudStack's issueCertificate: a CSR, or no CSR for a
// generated key, and the names the platform vouches for.
type IssueRequest struct {
	// CSR is a PEM or DER PKCS #10 request. If nil, the provider
	// generates the key (Settings.KeyAlgorithm and KeySize) and returns
	// it in the result.
	CSR []byte

	// DNSNames and IPAddresses are the host's names as the platform knows
	// them (CloudStack's domain and ipaddress lists), added to the CSR's
	// names. Empty entries are skipped and duplicates dropped; a "DNS
	// name" that is an IP literal (CloudStack lists a host's private IP
	// among its domains) moves to the IP addresses, as RFC 6125 wants.
	// Neither may name the management marker (Settings.ManagementSAN).
	// Without a CSR, the first DNS name becomes the common name, as in
	// CloudStack.
	DNSNames    []string
	IPAddresses []net.IP

	// Validity is the certificate's validity, exactly: a CA that decides
	// the validity itself (ACME) refuses any. If zero, the provider is
	// asked for at most Settings.Validity (provider.IssueRequest's
	// MaxValidity): rootca issues that long, an ACME CA its own validity
	// when it fits. Longer than Settings.MaxValidity is refused.
	Validity time.Duration

	// Role is what the certificate is for. If zero, provider.RoleHost:
	// one certificate serves as TLS server and client, as a KVM host's
	// does.
	Role provider.Role
}

// Issue issues a certificate with the current provider. A request the
// manager or the provider refuses matches ErrInvalidRequest; a feature
// the provider lacks (a generated key, IP addresses) matches
// errors.ErrUnsupported as well.
func (m *Manager) Issue(ctx context.Context, req *IssueRequest) (*provider.IssueResult, error) {
	if req == nil {
		return nil, &provider.RequestError{Reason: "nil request"}
	}
	preq, err := m.providerRequest(req)
	if err != nil {
		return nil, err
	}
	var res *provider.IssueResult
	err = m.with(func(h *handle) error {
		res, err = m.issue(ctx, h, preq)
		return err
	})
	return res, err
}

// providerRequest checks an agent's request and builds the provider's.
func (m *Manager) providerRequest(req *IssueRequest) (*provider.IssueRequest, error) {
	dns, ips := normalizeNames(req.DNSNames, req.IPAddresses)
	for _, n := range dns {
		if m.s.isMarker(n) {
			return nil, fmt.Errorf("%w: ca: request names %q, the management marker: %w", ErrInvalidRequest, n, ErrManagementName)
		}
	}
	if req.CSR != nil {
		csr, err := provider.ParseCSR(req.CSR)
		if err != nil {
			return nil, err
		}
		for _, n := range append([]string{csr.Subject.CommonName}, csr.DNSNames...) {
			if n != "" && m.s.isMarker(n) {
				return nil, fmt.Errorf("%w: ca: CSR asks for %q, the management marker: %w", ErrInvalidRequest, n, ErrManagementName)
			}
		}
	}
	validity, maxValidity := req.Validity, time.Duration(0)
	switch {
	case validity < 0:
		return nil, &provider.RequestError{Field: "duration", Reason: "negative"}
	case validity == 0:
		// An upper bound, not a validity, so that a CA that decides the
		// validity (ACME) can issue.
		maxValidity = m.s.validity
	case validity > m.s.maxValidity:
		return nil, &provider.RequestError{Field: "duration", Reason: fmt.Sprintf("%v exceeds the maximum validity %v (Settings.MaxValidity)", validity, m.s.maxValidity)}
	}
	role := req.Role
	if role == provider.RoleUnspecified {
		role = provider.RoleHost
	}
	preq := &provider.IssueRequest{
		CSR:         req.CSR,
		DNSNames:    dns,
		IPAddresses: ips,
		Validity:    validity,
		MaxValidity: maxValidity,
		Role:        role,
	}
	if req.CSR == nil {
		preq.KeyAlgorithm, preq.KeySize = m.s.keyAlg, m.s.keySize
		if len(dns) > 0 {
			preq.CommonName = dns[0]
		}
	}
	return preq, nil
}

func (m *Manager) issue(ctx context.Context, h *handle, req *provider.IssueRequest) (*provider.IssueResult, error) {
	res, err := h.p.Issue(ctx, req)
	if err != nil {
		m.s.logger.Warn("ca: issue refused", "provider", h.p.Name(), "dns", req.DNSNames, "ip", req.IPAddresses, "error", err)
		return nil, err
	}
	if res == nil || res.Certificate == nil {
		return nil, fmt.Errorf("ca: provider %s returned no certificate", h.p.Name())
	}
	h.publisherNoted(res.Certificate)
	m.s.logger.Info("ca: certificate issued", "provider", h.p.Name(), "serial", provider.FormatSerial(res.Certificate.SerialNumber),
		"subject", res.Certificate.Subject.String(), "dns", res.Certificate.DNSNames, "ip", res.Certificate.IPAddresses,
		"not_after", res.Certificate.NotAfter)
	return res, nil
}

// normalizeNames drops empty and duplicate names, lower-cases DNS names
// and moves IP literals from the DNS names to the IP addresses.
func normalizeNames(dnsIn []string, ipsIn []net.IP) ([]string, []net.IP) {
	var dns []string
	var ips []net.IP
	seen := map[string]bool{}
	addIP := func(ip net.IP) {
		if ip == nil {
			return
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if k := "ip:" + ip.String(); !seen[k] {
			seen[k] = true
			ips = append(ips, ip)
		}
	}
	for _, n := range dnsIn {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if ip := net.ParseIP(n); ip != nil {
			addIP(ip)
			continue
		}
		n = strings.ToLower(n)
		if k := "dns:" + n; !seen[k] {
			seen[k] = true
			dns = append(dns, n)
		}
	}
	for _, ip := range ipsIn {
		addIP(ip)
	}
	return dns, ips
}

// RevokeRequest is CloudStack's revokeCertificate.
type RevokeRequest struct {
	// Serial is the serial number in hexadecimal, with or without colons
	// (as openssl x509 -text prints it), a 0x prefix or leading zeros.
	// It may be empty when Certificate is set.
	Serial string
	// Certificate, if set, is the certificate to revoke, passed to the
	// provider (provider.RevokeRequest.Certificate): a CA that revokes
	// by certificate (ACME) needs it when it keeps no inventory. If
	// Serial is set as well, both must name the same certificate. If
	// nil, the manager takes the certificate from the provider's
	// inventory, when it has one.
	Certificate *x509.Certificate
	// Reason is the RFC 5280 reason. The zero value is unspecified.
	Reason provider.RevocationReason
}

// Revoke revokes a certificate with the current provider. An unknown
// serial yields an error matching ErrNotFound. The revocation is in the
// CRL and OCSP answers served by the handlers when Revoke returns.
func (m *Manager) Revoke(ctx context.Context, req *RevokeRequest) error {
	if req == nil {
		return &provider.RequestError{Reason: "nil request"}
	}
	preq := &provider.RevokeRequest{Certificate: req.Certificate, Reason: req.Reason}
	if req.Serial != "" || req.Certificate == nil {
		var err error
		if preq.Serial, err = ParseSerial(req.Serial); err != nil {
			return err
		}
	}
	serial, err := preq.SerialNumber()
	if err != nil {
		return err
	}
	return m.with(func(h *handle) error {
		if preq.Certificate == nil {
			// A provider that revokes by certificate (ACME) needs it:
			// take it from the inventory when there is one.
			rec, err := provider.LookupCertificate(ctx, h.p, serial)
			switch {
			case err == nil && len(rec.Raw) > 0:
				if cert, perr := x509.ParseCertificate(rec.Raw); perr == nil {
					preq.Certificate = cert
				}
			case errors.Is(err, ErrNotFound):
				return fmt.Errorf("ca: revoke serial %s: %w", provider.FormatSerial(serial), err)
			}
		}
		if err := h.p.Revoke(ctx, preq); err != nil {
			m.s.logger.Warn("ca: revocation failed", "provider", h.p.Name(), "serial", provider.FormatSerial(serial), "error", err)
			return err
		}
		m.s.logger.Info("ca: certificate revoked", "provider", h.p.Name(), "serial", provider.FormatSerial(serial), "reason", req.Reason.String())
		h.publisher().revoked(ctx, serial)
		m.dropRevoked(ctx, h, serial)
		return nil
	})
}

// ParseSerial parses a serial number in hexadecimal as CloudStack's
// revokeCertificate takes it: with or without colons, a 0x prefix and
// leading zeros.
func ParseSerial(s string) (*big.Int, error) {
	t := strings.TrimSpace(s)
	if len(t) > 2 && (t[:2] == "0x" || t[:2] == "0X") {
		t = t[2:]
	}
	t = strings.ReplaceAll(t, ":", "")
	if len(t) > 1024 {
		return nil, &provider.RequestError{Field: "serial", Reason: "longer than 1024 characters"}
	}
	trimmed := strings.TrimLeft(t, "0")
	if trimmed == "" && t != "" {
		return nil, &provider.RequestError{Field: "serial", Reason: "zero is not a serial number"}
	}
	n, err := provider.ParseSerial(trimmed)
	if err != nil {
		return nil, &provider.RequestError{Field: "serial", Reason: fmt.Sprintf("%q: %v", s, err)}
	}
	return n, nil
}
