package ca_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

// peerServe runs a cluster-port server and returns its address and the
// server-side handshake errors.
func peerServe(t *testing.T, cfg *tls.Config) (string, chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	errs := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			err = c.(*tls.Conn).Handshake()
			errs <- err
			if err == nil {
				_, _ = c.Write([]byte("k"))
			}
			c.Close()
		}
	}()
	return ln.Addr().String(), errs
}

func TestPeering(t *testing.T) {
	e := newEnv(t, nil)
	ms1 := e.identity(t)
	ms2, err := e.m.NewIdentity(t.Context(), &ca.IdentityOptions{Hostname: "ms2.example.org", Addresses: []net.IP{net.ParseIP("127.0.0.1")}})
	require.NoError(t, err)
	srvCfg, err := e.m.PeerServerTLSConfig(ms1)
	require.NoError(t, err)
	addr, srvErrs := peerServe(t, srvCfg)

	t.Run("two management servers", func(t *testing.T) {
		cfg, err := e.m.PeerClientTLSConfig(ms2, "127.0.0.1")
		require.NoError(t, err)
		c, err := tls.Dial("tcp", addr, cfg)
		require.NoError(t, err)
		_, err = io.ReadFull(c, make([]byte, 1))
		require.NoError(t, err)
		c.Close()
		require.NoError(t, <-srvErrs)
	})
	t.Run("agent certificate refused", func(t *testing.T) {
		_, agent := e.issue(t, provider.RoleHost, []string{"kvm1.example.org"}, []net.IP{net.ParseIP("127.0.0.1")})
		cfg := e.clientConfig(&agent)
		cfg.ServerName = "127.0.0.1"
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			_, err = io.ReadFull(c, make([]byte, 1))
			c.Close()
		}
		assert.Error(t, err)
		assert.ErrorIs(t, <-srvErrs, ca.ErrManagementName)
	})
	t.Run("console proxy certificate refused", func(t *testing.T) {
		_, cpvm := e.issue(t, provider.RoleClient, []string{"cpvm.example.org"}, nil)
		cfg := e.clientConfig(&cpvm)
		cfg.ServerName = "127.0.0.1"
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			_, err = io.ReadFull(c, make([]byte, 1))
			c.Close()
		}
		assert.Error(t, err)
		assert.ErrorIs(t, <-srvErrs, ca.ErrManagementName)
	})
	t.Run("no client certificate refused", func(t *testing.T) {
		cfg := e.clientConfig(nil)
		cfg.ServerName = "127.0.0.1"
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			_, err = io.ReadFull(c, make([]byte, 1))
			c.Close()
		}
		assert.Error(t, err)
		assert.Error(t, <-srvErrs)
	})
	t.Run("client refuses a server without the marker", func(t *testing.T) {
		_, agent := e.issue(t, provider.RoleHost, []string{"kvm1.example.org"}, []net.IP{net.ParseIP("127.0.0.1")})
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{agent}})
		require.NoError(t, err)
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		cfg, err := e.m.PeerClientTLSConfig(ms2, "127.0.0.1")
		require.NoError(t, err)
		_, err = tls.Dial("tcp", ln.Addr().String(), cfg)
		assert.ErrorIs(t, err, ca.ErrManagementName)
	})
}
