package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/kvmpki/kvmpki/provider"
)

// AgentServerConfig configures the management server's agent port (8250
// in CloudStack). The zero value, given an Identity, is the strict mode:
// every client presents a certificate that chains to the CA, has the
// client role, is valid and not revoked.
type AgentServerConfig struct {
	// Identity is the management server's own certificate, which the
	// port presents (never the CA key, as CloudStack does). Required.
	Identity *Identity

	// InsecureAllowMissingClientCert admits clients that present no
	// certificate (CloudStack's ca.plugin.root.auth.strictness=false).
	// A client that presents one is still verified in full. Each
	// admission is reported as a waived refusal.
	InsecureAllowMissingClientCert bool

	// InsecureAllowExpired admits expired and not-yet-valid client
	// certificates (CloudStack's ca.plugin.root.allow.expired.cert);
	// chain, role and revocation are still checked, at the edge of the
	// certificate's validity. Each admission is reported as a waived
	// refusal.
	InsecureAllowExpired bool

	// RequireSourceIP refuses a client whose certificate has no IP
	// address equal to the address it connects from (CloudStack's
	// ownership check). It is off by default because it breaks agents
	// behind NAT and multi-homed hosts.
	RequireSourceIP bool

	// OnRefusal, if set, is called for every refusal, including those a
	// relaxation waived (Refusal.Waived). It runs inside the handshake:
	// keep it short. Refusals are also logged through Settings.Logger.
	OnRefusal func(Refusal)
}

// Refusal reports a client certificate the agent port refused, or a
// refusal an Insecure setting waived.
type Refusal struct {
	RemoteAddr net.Addr
	// Certificate is the client's leaf, nil when it presented none.
	Certificate *x509.Certificate
	// Err is the reason; it matches ErrNoCertificate, ErrExpired,
	// ErrRevoked, ErrUnknownAuthority, ErrIncompatibleUsage or
	// ErrIdentityMismatch.
	Err error
	// Waived is true when the connection was admitted anyway.
	Waived bool
}

// AgentServerTLSConfig returns the tls.Config of the agent port: TLS 1.2
// and later with Go's default cipher suites, the Identity's certificate
// (renewals served at once), and client certificates judged in
// VerifyConnection, which crypto/tls runs on every handshake, resumed
// TLS 1.2 and 1.3 sessions included: a certificate revoked after its
// first handshake is refused when it resumes. Each handshake uses the
// provider current at that moment ([Manager.SetProvider]).
//
// Wrap the listener with [Manager.NewAgentListener] to track which agent
// is connected.
func (m *Manager) AgentServerTLSConfig(cfg *AgentServerConfig) (*tls.Config, error) {
	if cfg == nil || cfg.Identity == nil {
		return nil, errors.New("ca: AgentServerConfig.Identity is required")
	}
	c := *cfg
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.Identity.GetCertificate,
		// The hook enforces the certificate, so that a missing one is
		// reported (and, when relaxed, waived) like any refusal.
		ClientAuth: tls.RequestClientCert,
	}
	base.VerifyConnection = func(cs tls.ConnectionState) error {
		return m.verifyAgent(&c, nil, cs)
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		var addr net.Addr
		if hello.Conn != nil {
			addr = hello.Conn.RemoteAddr()
		}
		per := base.Clone()
		per.GetConfigForClient = nil
		per.VerifyConnection = func(cs tls.ConnectionState) error {
			return m.verifyAgent(&c, addr, cs)
		}
		return per, nil
	}
	return base, nil
}

func (m *Manager) verifyAgent(c *AgentServerConfig, addr net.Addr, cs tls.ConnectionState) error {
	report := func(leaf *x509.Certificate, err error, waived bool) {
		attrs := []any{"remote", addrString(addr), "error", err, "waived", waived}
		if leaf != nil {
			attrs = append(attrs, "subject", leaf.Subject.String(), "serial", provider.FormatSerial(leaf.SerialNumber))
		}
		if waived {
			m.s.logger.Warn("ca: agent certificate refusal waived", attrs...)
		} else {
			m.s.logger.Warn("ca: agent refused", attrs...)
		}
		if c.OnRefusal != nil {
			c.OnRefusal(Refusal{RemoteAddr: addr, Certificate: leaf, Err: err, Waived: waived})
		}
	}
	if len(cs.PeerCertificates) == 0 {
		err := &provider.VerifyError{Err: ErrNoCertificate}
		report(nil, err, c.InsecureAllowMissingClientCert)
		if c.InsecureAllowMissingClientCert {
			return nil
		}
		return err
	}
	leaf := cs.PeerCertificates[0]
	h, err := m.acquire()
	if err != nil {
		return err
	}
	defer m.release(h)
	now := m.s.now()
	at := now
	if outsideValidity(leaf, now) {
		err := &provider.VerifyError{Subject: leaf.Subject.String(), Serial: leaf.SerialNumber,
			Err: fmt.Errorf("%w: valid from %s to %s", ErrExpired, leaf.NotBefore.UTC(), leaf.NotAfter.UTC())}
		if !c.InsecureAllowExpired {
			report(leaf, err, false)
			return err
		}
		report(leaf, err, true)
		at = clampInto(leaf, now)
	}
	if err := h.verifyCerts(context.Background(), cs.PeerCertificates, provider.UsageClientAuth, "", at); err != nil {
		report(leaf, err, false)
		return err
	}
	if c.RequireSourceIP {
		if err := checkSourceIP(leaf, addr); err != nil {
			report(leaf, err, false)
			return err
		}
	}
	return nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// checkSourceIP checks that leaf names the IP address addr comes from.
func checkSourceIP(leaf *x509.Certificate, addr net.Addr) error {
	ap, err := netip.ParseAddrPort(addrString(addr))
	if err != nil {
		return fmt.Errorf("%w: source address %q unknown", ErrIdentityMismatch, addrString(addr))
	}
	src := ap.Addr().Unmap()
	for _, ip := range leaf.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap() == src {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not among %v", ErrIdentityMismatch, src, leaf.IPAddresses)
}
