package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/examples/acmeplugin/internal/pebbletest"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// TestAgentPort: package ca's agent-port TLS configuration, with the
// plugin as the current provider, admits an agent whose client
// certificate the plugin issued, and refuses one from another ACME CA and
// one without a certificate.
func TestAgentPort(t *testing.T) {
	pb := pebbletest.Start(t)
	other := pebbletest.Start(t) // another ACME CA, whose certificates must be refused
	ctx := t.Context()

	reg := &provider.Registry{}
	require.NoError(t, reg.Register("acme", "ACME CA (Pebble)", Factory(Config{
		DirectoryURL: pb.Directory, AccountKey: pebbletest.NewAccountKey(t), HTTPClient: pb.Client,
		CACertificates: pb.Chain, Solver: &HTTP01Solver{},
	})))
	// The management server's own certificate comes from rootca, the
	// agents' from the plugin.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	store := rootca.NewMemStore()
	opts := rootca.Options{Signer: key}
	first, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: opts})
	require.NoError(t, err)
	require.NoError(t, first.Close())
	require.NoError(t, reg.Register("root", "kvmpki built-in CA", rootca.Factory(store, &opts)))

	m, err := ca.New(ctx, reg, &ca.Settings{Provider: "root"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	id, err := m.NewIdentity(ctx, &ca.IdentityOptions{Hostname: "ms1.kvm.example.test"})
	require.NoError(t, err)
	serverRoots := x509.NewCertPool()
	rootCerts, err := m.CACertificates(ctx)
	require.NoError(t, err)
	for _, c := range rootCerts {
		serverRoots.AddCert(c)
	}
	require.NoError(t, m.SetProvider(ctx, "acme"))

	var (
		mu       sync.Mutex
		refusals []ca.Refusal
	)
	cfg, err := m.AgentServerTLSConfig(&ca.AgentServerConfig{Identity: id, OnRefusal: func(r ca.Refusal) {
		mu.Lock()
		refusals = append(refusals, r)
		mu.Unlock()
	}})
	require.NoError(t, err)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte("ok"))
				}
			}()
		}
	}()

	issue := func(t *testing.T, pb *pebbletest.Server, name string) tls.Certificate {
		t.Helper()
		p := newPebbleProvider(t, pb)
		res, err := p.Issue(ctx, &provider.IssueRequest{DNSNames: []string{name}, Role: provider.RoleHost})
		require.NoError(t, err)
		cert, err := res.TLSCertificate()
		require.NoError(t, err)
		return cert
	}
	dial := func(t *testing.T, certs []tls.Certificate) error {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			RootCAs: serverRoots, ServerName: "ms1.kvm.example.test", Certificates: certs, MinVersion: tls.VersionTLS12,
		})
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if string(got) != "ok" {
			return errors.New("no answer after the handshake")
		}
		return nil
	}
	lastRefusal := func() ca.Refusal {
		mu.Lock()
		defer mu.Unlock()
		require.NotEmpty(t, refusals)
		return refusals[len(refusals)-1]
	}

	tests := []struct {
		name    string
		certs   func(t *testing.T) []tls.Certificate
		refusal error // nil: admitted
	}{
		{name: "PluginIssued", certs: func(t *testing.T) []tls.Certificate {
			return []tls.Certificate{issue(t, pb, "kvm1.kvm.example.test")}
		}},
		{name: "OtherACMECA", certs: func(t *testing.T) []tls.Certificate {
			return []tls.Certificate{issue(t, other, "kvm2.kvm.example.test")}
		}, refusal: ca.ErrUnknownAuthority},
		{name: "NoCertificate", certs: func(t *testing.T) []tls.Certificate { return nil }, refusal: ca.ErrNoCertificate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := dial(t, tc.certs(t))
			if tc.refusal == nil {
				assert.NoError(t, err, "the agent port must admit the plugin's certificate")
				mu.Lock()
				assert.Empty(t, refusals)
				mu.Unlock()
				return
			}
			assert.Error(t, err, "the agent port must refuse")
			assert.ErrorIs(t, lastRefusal().Err, tc.refusal)
		})
	}
}

// TestManager: package ca works with the plugin as its provider, though
// an ACME CA decides the validity and revokes by certificate: the
// manager asks for at most Settings.Validity (provider.IssueRequest's
// MaxValidity), so NewIdentity, Identity.Renew and Manager.Issue get the
// CA's own validity when it fits and Unsupported when it does not; a
// named duration stays Unsupported; Manager.Revoke with the certificate
// revokes it at the CA (Pebble's own status says so), while a serial
// alone cannot reach a CA without an inventory.
func TestManager(t *testing.T) {
	pb := pebbletest.Start(t)
	ctx := t.Context()
	reg := &provider.Registry{}
	require.NoError(t, reg.Register("acme", "ACME CA (Pebble)", Factory(Config{
		DirectoryURL: pb.Directory, AccountKey: pebbletest.NewAccountKey(t), HTTPClient: pb.Client,
		CACertificates: pb.Chain, Solver: &HTTP01Solver{},
	})))
	// Pebble 2.4 issues for five years: the operator allows that much.
	const fiveYears = 5*365*24*time.Hour + 48*time.Hour
	m, err := ca.New(ctx, reg, &ca.Settings{Provider: "acme", Validity: fiveYears, MaxValidity: 10 * 365 * 24 * time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })

	t.Run("NewIdentity", func(t *testing.T) {
		id, err := m.NewIdentity(ctx, &ca.IdentityOptions{Hostname: "ms1.kvm.example.test"})
		require.NoError(t, err)
		first := id.Certificate()
		require.NotNil(t, first)
		require.NoError(t, id.Renew(ctx), "Identity.Renew")
		assert.NotEqual(t, 0, id.Certificate().SerialNumber.Cmp(first.SerialNumber), "a renewed management certificate")
	})

	var issued *provider.IssueResult
	t.Run("Issue", func(t *testing.T) {
		issued, err = m.Issue(ctx, &ca.IssueRequest{DNSNames: []string{"kvm1.kvm.example.test"}})
		require.NoError(t, err)
		assert.Equal(t, "Valid", pb.Status(t, issued.Certificate.SerialNumber))
		_, err = m.Issue(ctx, &ca.IssueRequest{DNSNames: []string{"kvm2.kvm.example.test"}, Validity: 24 * time.Hour})
		assert.ErrorIs(t, err, errors.ErrUnsupported, "a named duration is a validity, which an ACME CA decides")
	})

	t.Run("ValidityTooShort", func(t *testing.T) {
		short, err := ca.New(ctx, reg, &ca.Settings{Provider: "acme"}) // at most 365 days
		require.NoError(t, err)
		t.Cleanup(func() { _ = short.Close() })
		_, err = short.Issue(ctx, &ca.IssueRequest{DNSNames: []string{"kvm3.kvm.example.test"}})
		assert.ErrorIs(t, err, errors.ErrUnsupported, "Pebble's five years do not fit in Settings.Validity")
	})

	t.Run("Revoke", func(t *testing.T) {
		require.NotNil(t, issued)
		serial := provider.FormatSerial(issued.Certificate.SerialNumber)
		err := m.Revoke(ctx, &ca.RevokeRequest{Serial: serial})
		assert.ErrorIs(t, err, errors.ErrUnsupported, "a serial alone cannot reach a CA without an inventory")
		assert.Equal(t, "Valid", pb.Status(t, issued.Certificate.SerialNumber))
		require.NoError(t, m.Revoke(ctx, &ca.RevokeRequest{Certificate: issued.Certificate, Reason: provider.ReasonKeyCompromise}))
		assert.Equal(t, "Revoked", pb.Status(t, issued.Certificate.SerialNumber))
	})
}
