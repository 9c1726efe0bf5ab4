package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// IdentityOptions names the management server for its own certificate.
type IdentityOptions struct {
	// Hostname is the server's host name, the certificate's common name
	// and first DNS name. Required.
	Hostname string

	// DNSNames are further names of the server (an alias, a load
	// balancer's name), after Hostname. Empty and duplicate entries are
	// dropped; none may be the management marker.
	DNSNames []string

	// Addresses are the server's IP addresses (the caller lists its
	// interfaces). Link-local, unspecified and multicast addresses are
	// left out (CloudStack puts link-local IPv6 in, issue #10319).
	Addresses []net.IP

	// ManagementCIDRs, if set, keeps only the Addresses inside one of
	// them (CloudStack's management.network.cidr). If empty, every
	// address that is not left out above is kept.
	ManagementCIDRs []*net.IPNet
}

// Identity is the management server's own certificate and key: the key
// is generated here and never leaves the process, and the provider signs
// a CSR for it, so that the server never holds the CA key (CloudStack's
// agent port serves the CA key itself). Its NotAfter never exceeds the
// issuing CA's. It is renewed in place ([Identity.RenewIfDue]) and the
// new certificate is served to every handshake that starts afterwards.
type Identity struct {
	m   *Manager
	dns []string
	ips []net.IP
	cur atomic.Pointer[tls.Certificate]
	mu  sync.Mutex // one renewal at a time
}

// NewIdentity issues the management server's certificate with the
// current provider: a DNS name for opts.Hostname and for the management
// marker (Settings.ManagementSAN), and the kept addresses, with the role
// provider.RoleHost (server on the agent port, client and server on the
// cluster port).
func (m *Manager) NewIdentity(ctx context.Context, opts *IdentityOptions) (*Identity, error) {
	if opts == nil || opts.Hostname == "" {
		return nil, errors.New("ca: IdentityOptions.Hostname is required")
	}
	host, err := provider.CheckDNSName(opts.Hostname)
	if err != nil {
		return nil, fmt.Errorf("ca: identity host name: %w", err)
	}
	if m.s.isMarker(host) {
		return nil, fmt.Errorf("ca: identity host name %q is the management marker", host)
	}
	extra, _ := normalizeNames(append([]string{host}, opts.DNSNames...), nil)
	for _, n := range extra[1:] {
		if _, err := provider.CheckDNSName(n); err != nil {
			return nil, fmt.Errorf("ca: identity name: %w", err)
		}
		if m.s.isMarker(n) {
			return nil, fmt.Errorf("ca: identity name %q is the management marker", n)
		}
	}
	id := &Identity{m: m, dns: append(extra, m.s.managementSAN), ips: managementAddresses(opts.Addresses, opts.ManagementCIDRs)}
	if err := id.Renew(ctx); err != nil {
		return nil, err
	}
	return id, nil
}

// managementAddresses keeps the addresses that may name the server.
func managementAddresses(addrs []net.IP, cidrs []*net.IPNet) []net.IP {
	var out []net.IP
	for _, ip := range addrs {
		if ip == nil || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() || ip.Equal(net.IPv4bcast) {
			continue
		}
		if len(cidrs) > 0 {
			inside := false
			for _, n := range cidrs {
				if n != nil && n.Contains(ip) {
					inside = true
					break
				}
			}
			if !inside {
				continue
			}
		}
		out = append(out, ip)
	}
	_, ips := normalizeNames(nil, out)
	return ips
}

// Certificate returns the certificate served now.
func (id *Identity) Certificate() *x509.Certificate { return id.cur.Load().Leaf }

// GetCertificate is for tls.Config.GetCertificate: the current
// certificate, so that a renewal is served to the next handshake.
func (id *Identity) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return id.cur.Load(), nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate, on the
// cluster port.
func (id *Identity) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return id.cur.Load(), nil
}

// Due reports whether the certificate is in its renewal window: within
// Settings.ExpiryAlertPeriod of its NotAfter, or past half its lifetime
// when that is shorter (a certificate cut short by its CA's end).
func (id *Identity) Due() bool {
	c := id.Certificate()
	window := min(id.m.s.alert, c.NotAfter.Sub(c.NotBefore)/2)
	return !id.m.s.now().Before(c.NotAfter.Add(-window))
}

// RenewIfDue renews the certificate when it is [Identity.Due], and
// reports whether it did. The background task calls it.
func (id *Identity) RenewIfDue(ctx context.Context) (bool, error) {
	if !id.Due() {
		return false, nil
	}
	return true, id.Renew(ctx)
}

// Renew issues a new certificate, with a new key, and serves it from the
// next handshake on. On error the current certificate stays.
func (id *Identity) Renew(ctx context.Context) error {
	id.mu.Lock()
	defer id.mu.Unlock()
	key, err := generateKey(id.m.s.keyAlg, id.m.s.keySize)
	if err != nil {
		return err
	}
	// The CSR names what the request vouches for: a CA that certifies
	// exactly the CSR's names (ACME) cannot add any.
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id.dns[0]}, DNSNames: id.dns, IPAddresses: id.ips,
	}, key)
	if err != nil {
		return fmt.Errorf("ca: identity CSR: %w", err)
	}
	var res *provider.IssueResult
	err = id.m.with(func(h *handle) error {
		st, err := h.caCerts(ctx, false)
		if err != nil {
			return err
		}
		now := id.m.s.now()
		// An upper bound, so that a CA that decides the validity
		// (ACME) can issue; the result is checked against the CA below.
		validity := min(id.m.s.validity, st.certs[0].NotAfter.Sub(now)-identityMargin)
		if validity <= 0 {
			return fmt.Errorf("ca: the CA certificate %q expires at %s: no room for the management certificate", st.certs[0].Subject.String(), st.certs[0].NotAfter.UTC())
		}
		res, err = id.m.issue(ctx, h, &provider.IssueRequest{
			CSR: csr, CommonName: id.dns[0], DNSNames: id.dns, IPAddresses: id.ips,
			MaxValidity: validity, Role: provider.RoleHost,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("ca: management certificate: %w", err)
	}
	for _, c := range res.Chain {
		if res.Certificate.NotAfter.After(c.NotAfter) {
			return fmt.Errorf("ca: management certificate ends at %s, after its CA %q (%s)", res.Certificate.NotAfter.UTC(), c.Subject.String(), c.NotAfter.UTC())
		}
	}
	chain, err := (&provider.IssueResult{Certificate: res.Certificate, Chain: res.Chain, PrivateKey: key}).TLSCertificate()
	if err != nil {
		return err
	}
	id.cur.Store(&chain)
	id.m.s.logger.Info("ca: management certificate issued", "serial", provider.FormatSerial(res.Certificate.SerialNumber), "not_after", res.Certificate.NotAfter)
	return nil
}

// generateKey generates the management server's key: ECDSA P-256 when
// the settings name no algorithm.
func generateKey(alg provider.KeyAlgorithm, size int) (crypto.Signer, error) {
	switch alg {
	case provider.KeyAlgorithmRSA:
		return rsa.GenerateKey(rand.Reader, size)
	case provider.KeyAlgorithmECDSA:
		switch size {
		case 384:
			return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		case 521:
			return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		}
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// Run renews the certificate whenever it becomes due, checking every
// Settings.BackgroundInterval, until ctx is done. Renewal failures are
// logged and retried at the next check.
func (id *Identity) Run(ctx context.Context) error {
	t := time.NewTicker(id.m.s.interval)
	defer t.Stop()
	for {
		if _, err := id.RenewIfDue(ctx); err != nil {
			id.m.s.logger.Error("ca: renewing the management certificate failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
