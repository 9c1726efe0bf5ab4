package migration_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/libvirttls"
	"github.com/kvmpki/kvmpki/migration"
	"github.com/kvmpki/kvmpki/provider"
)

// TestPreflightLibvirtd runs Preflight against a real libvirtd serving TLS
// and checks that each way it can refuse a source is named.
func TestPreflightLibvirtd(t *testing.T) {
	t.Parallel()
	peers.Require(t, "libvirtd")
	ca := newCA(t, "kvmpki migration CA")
	other := newCA(t, "another CA")

	// The destination's certificate names "localhost" only, so that
	// dialling 127.0.0.1 is a name mismatch.
	server := ca.issue(t, "kvm2", provider.RoleHost, []string{"localhost"}, nil, time.Hour)
	source := ca.issue(t, "src-kvm1", provider.RoleHost, []string{"kvm1"}, nil, time.Hour)
	stranger := ca.issue(t, "console-proxy", provider.RoleClient, nil, nil, time.Hour)
	revokedSource := ca.issue(t, "src-kvm3", provider.RoleHost, []string{"kvm3"}, nil, time.Hour)
	daemonCRL := ca.revoke(t, revokedSource)
	foreign := other.issue(t, "src-kvm9", provider.RoleHost, []string{"kvm9"}, nil, time.Hour)

	d, err := peers.StartLibvirtd(t, ca.pki(server, daemonCRL), peers.LibvirtdOptions{AllowedDNs: []string{"CN=src-*"}})
	require.NoError(t, err)
	// The peer helper agrees with Preflight's verdicts below.
	require.NoError(t, d.Connect(t, ca.pki(source, nil), "localhost"))

	closed := freePort(t)
	dst := func(addr string, port int) migration.Host {
		return migration.Host{Name: "kvm2", Address: addr, State: migration.StateSecured, LibvirtPort: port}
	}
	tests := []struct {
		name   string
		dst    migration.Host
		cfg    *migration.PreflightOptions
		reason error
		side   string
		text   string
	}{
		{name: "accepted", dst: dst("localhost", d.Port), cfg: preflightOptions(t, ca, source, nil)},
		{name: "accepted with the CRL", dst: dst("localhost", d.Port), cfg: preflightOptions(t, ca, source, daemonCRL)},
		{name: "port closed", dst: dst("127.0.0.1", closed), cfg: preflightOptions(t, ca, source, nil),
			reason: migration.ErrPortClosed, text: "connection refused"},
		{name: "name mismatch", dst: dst("127.0.0.1", d.Port), cfg: preflightOptions(t, ca, source, nil),
			reason: migration.ErrNameMismatch, side: "destination", text: "127.0.0.1"},
		{name: "destination from an unknown CA", dst: dst("localhost", d.Port), cfg: preflightOptions(t, other, foreign, nil),
			reason: migration.ErrUnknownAuthority, side: "destination", text: "unknown authority"},
		{name: "DN not allowed", dst: dst("localhost", d.Port), cfg: preflightOptions(t, ca, stranger, nil),
			reason: migration.ErrClientRefused, side: "source", text: "CN=console-proxy"},
		{name: "revoked source, known only to the destination", dst: dst("localhost", d.Port), cfg: preflightOptions(t, ca, revokedSource, nil),
			reason: migration.ErrClientRefused, side: "source", text: "closed the connection after the handshake"},
		{name: "revoked source, known locally", dst: dst("localhost", d.Port), cfg: preflightOptions(t, ca, revokedSource, daemonCRL),
			reason: migration.ErrRevoked, side: "source", text: "CN=src-kvm3"},
		{name: "source certificate from a CA the source does not trust", dst: dst("localhost", d.Port),
			cfg:    withRoots(t, preflightOptions(t, other, foreign, nil), ca),
			reason: migration.ErrUnknownAuthority, side: "source", text: "CN=src-kvm9"},
		{name: "source certificate from a CA the destination does not trust", dst: dst("localhost", d.Port),
			cfg:    withRoots(t, preflightOptions(t, other, foreign, nil), ca, other),
			reason: migration.ErrClientRefused, side: "source", text: "CN=src-kvm9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := migration.Preflight(t.Context(), tc.dst, tc.cfg)
			if tc.reason == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			t.Log(err)
			assert.ErrorIs(t, err, tc.reason)
			var pe *migration.PreflightError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.side, pe.Side)
			assert.Equal(t, "kvm2 ("+tc.dst.Address+")", pe.Host)
			assert.Equal(t, net.JoinHostPort(tc.dst.Address, strconv.Itoa(tc.dst.LibvirtPort)), pe.Addr)
			assert.Contains(t, err.Error(), tc.text)
		})
	}

	t.Run("revoked destination", func(t *testing.T) {
		crl := ca.revoke(t, server)
		err := migration.Preflight(t.Context(), dst("localhost", d.Port), preflightOptions(t, ca, source, crl))
		assert.ErrorIs(t, err, migration.ErrRevoked)
		var pe *migration.PreflightError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, "destination", pe.Side)
		assert.Contains(t, err.Error(), "CN=kvm2")
	})
}

// TestPreflightExpiredDestination starts libvirtd with a certificate that
// expires seconds later: libvirtd checks its own certificate only at
// start, and keeps serving it.
func TestPreflightExpiredDestination(t *testing.T) {
	t.Parallel()
	peers.Require(t, "libvirtd")
	ca := newCA(t, "kvmpki migration CA")
	server := ca.issue(t, "kvm2", provider.RoleHost, []string{"localhost"}, []string{"127.0.0.1"}, 3*time.Second)
	source := ca.issue(t, "kvm1", provider.RoleHost, []string{"kvm1"}, nil, time.Hour)
	d, err := peers.StartLibvirtd(t, ca.pki(server, nil), peers.LibvirtdOptions{})
	require.NoError(t, err)
	host := migration.Host{Name: "kvm2", Address: "127.0.0.1", State: migration.StateSecured, LibvirtPort: d.Port}
	require.NoError(t, migration.Preflight(t.Context(), host, preflightOptions(t, ca, source, nil)))

	time.Sleep(time.Until(server.cert.NotAfter) + 1100*time.Millisecond)
	err = migration.Preflight(t.Context(), host, preflightOptions(t, ca, source, nil))
	assert.ErrorIs(t, err, migration.ErrExpired)
	var pe *migration.PreflightError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "destination", pe.Side)
	assert.Contains(t, err.Error(), "expired")
}

func TestPreflightExpiredSource(t *testing.T) {
	ca := newCA(t, "kvmpki migration CA")
	source := ca.issue(t, "kvm1", provider.RoleHost, []string{"kvm1"}, nil, time.Hour)
	cfg := preflightOptions(t, ca, source, nil)
	cfg.Time = func() time.Time { return source.cert.NotAfter.Add(time.Minute) }
	dialled := false
	cfg.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialled = true
		return nil, context.Canceled
	}
	err := migration.Preflight(t.Context(), migration.Host{Address: "10.0.0.2", State: migration.StateSecured}, cfg)
	assert.ErrorIs(t, err, migration.ErrExpired)
	var pe *migration.PreflightError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "source", pe.Side)
	assert.Equal(t, "10.0.0.2:16514", pe.Addr)
	assert.False(t, dialled, "an expired source certificate is named without dialling")
}

// TestPreflightNotLibvirt covers destinations that are not a libvirtd TLS
// port, with Go servers on loopback.
func TestPreflightNotLibvirt(t *testing.T) {
	ca := newCA(t, "kvmpki migration CA")
	server := ca.issue(t, "kvm2", provider.RoleHost, nil, []string{"127.0.0.1"}, time.Hour)
	source := ca.issue(t, "kvm1", provider.RoleHost, []string{"kvm1"}, nil, time.Hour)
	serverCert, err := tls.X509KeyPair(server.certPEM, server.keyPEM)
	require.NoError(t, err)

	tests := []struct {
		name   string
		serve  func(net.Conn)
		reason error
		text   string
	}{
		{"plain TCP service", func(c net.Conn) { _, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n")) }, migration.ErrHandshake, "TLS handshake"},
		{"TLS without libvirt's confirmation byte", func(c net.Conn) {
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAnyClientCert})
			if tc.Handshake() == nil {
				_, _ = tc.Write([]byte("HTTP/1.1 400 Bad Request\r\n"))
			}
		}, migration.ErrHandshake, "confirmation byte 0x48"},
		{"TLS server closing after the handshake", func(c net.Conn) {
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAnyClientCert})
			_ = tc.Handshake()
		}, migration.ErrClientRefused, "CN=kvm1"},
		{"silent server", func(c net.Conn) { time.Sleep(3 * time.Second) }, migration.ErrUnreachable, "deadline exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				tc.serve(c)
			}()
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			host := migration.Host{Address: "127.0.0.1", State: migration.StateSecured, LibvirtPort: ln.Addr().(*net.TCPAddr).Port}
			err = migration.Preflight(ctx, host, preflightOptions(t, ca, source, nil))
			assert.ErrorIs(t, err, tc.reason)
			assert.ErrorContains(t, err, tc.text)
		})
	}
}

// TestPreflightRefusesUnverifiedCRLs: a CRL that does not verify against
// the CA file, or is stale, stops Preflight before it dials; it used to be
// ignored silently.
func TestPreflightRefusesUnverifiedCRLs(t *testing.T) {
	ca := newCA(t, "kvmpki migration CA")
	other := newCA(t, "kvmpki migration CA") // the same name, another key
	source := ca.issue(t, "kvm1", provider.RoleHost, []string{"kvm1"}, nil, time.Hour)
	tests := []struct {
		name string
		opts func() *migration.PreflightOptions
		msg  string
	}{
		{name: "CRL of a same-name CA outside the CA file", msg: "not signed by a CA of the CA file",
			opts: func() *migration.PreflightOptions { return preflightOptions(t, ca, source, other.crl(t)) }},
		{name: "stale CRL", msg: "stale", opts: func() *migration.PreflightOptions {
			o := preflightOptions(t, ca, source, ca.crl(t))
			o.Time = func() time.Time { return o.CRLs[0].NextUpdate.Add(time.Second) }
			return o
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts()
			dialled := false
			opts.DialContext = func(context.Context, string, string) (net.Conn, error) {
				dialled = true
				return nil, context.Canceled
			}
			err := migration.Preflight(t.Context(), migration.Host{Address: "10.0.0.2", State: migration.StateSecured}, opts)
			assert.ErrorContains(t, err, tc.msg)
			assert.False(t, dialled)
		})
	}
}

func TestPreflightNeedsCredentials(t *testing.T) {
	host := migration.Host{Address: "10.0.0.2", State: migration.StateSecured}
	assert.ErrorContains(t, migration.Preflight(t.Context(), host, nil), "needs CACerts")
	assert.ErrorContains(t, migration.Preflight(t.Context(), host, &migration.PreflightOptions{}), "needs CACerts")
	assert.ErrorContains(t, migration.Preflight(t.Context(), migration.Host{}, &migration.PreflightOptions{}), "address: empty")
}

func TestLoadPreflightOptions(t *testing.T) {
	ca := newCA(t, "kvmpki migration CA")
	source := ca.issue(t, "kvm1", provider.RoleHost, []string{"kvm1"}, nil, time.Hour)
	dir := t.TempDir()
	write := func(name string, data []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	write(libvirttls.PKIPathCACert, ca.bundle)
	write(libvirttls.PKIPathClientCert, source.certPEM)
	write(libvirttls.PKIPathClientKey, source.keyPEM)
	cfg, err := migration.LoadPreflightOptions(t.Context(), dir)
	require.NoError(t, err)
	assert.Empty(t, cfg.CRLs)
	assert.Equal(t, source.cert.Raw, cfg.Certificate.Certificate[0])

	write(libvirttls.PKIPathCRL, ca.revoke(t, source))
	cfg, err = migration.LoadPreflightOptions(t.Context(), dir)
	require.NoError(t, err)
	require.Len(t, cfg.CRLs, 1)
	err = migration.Preflight(t.Context(), migration.Host{Address: "10.0.0.2", State: migration.StateSecured}, cfg)
	assert.ErrorIs(t, err, migration.ErrRevoked, "the CRL loaded from cacrl.pem is used")

	write(libvirttls.PKIPathCRL, []byte("not a CRL"))
	_, err = migration.LoadPreflightOptions(t.Context(), dir)
	assert.ErrorContains(t, err, "neither a PEM X509 CRL block nor a DER CRL")
	require.NoError(t, os.Remove(filepath.Join(dir, "clientkey.pem")))
	_, err = migration.LoadPreflightOptions(t.Context(), dir)
	assert.ErrorContains(t, err, "clientkey.pem")
}

// withRoots replaces cfg's trusted CAs by those of cas.
func withRoots(t testing.TB, cfg *migration.PreflightOptions, cas ...*testCA) *migration.PreflightOptions {
	t.Helper()
	c := *cfg
	c.CACerts = nil
	for _, ca := range cas {
		certs, err := x509.ParseCertificates(derOf(t, ca.bundle))
		require.NoError(t, err)
		c.CACerts = append(c.CACerts, certs...)
	}
	return &c
}

// freePort returns a loopback port nothing listens on a moment later.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}
