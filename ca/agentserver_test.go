package ca_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

func httpGet(t testing.TB, h http.Handler, target string, hdr http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// agentServer runs an agent listener answering "ping" with "pong".
type agentServer struct {
	ln   *ca.AgentListener
	addr string
	wg   sync.WaitGroup
}

func (e *env) serveAgents(t testing.TB, cfg *ca.AgentServerConfig) *agentServer {
	t.Helper()
	return e.serveAgentsMode(t, cfg, false)
}

// serveAgentsMode runs the server; with once, a connection is closed
// after its first pong (for clients that wait for the server to close).
func (e *env) serveAgentsMode(t testing.TB, cfg *ca.AgentServerConfig, once bool) *agentServer {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err := e.m.NewAgentListener(inner, cfg)
	require.NoError(t, err)
	s := &agentServer{ln: ln, addr: inner.Addr().String()}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if line == "ping\n" {
						_, _ = c.Write([]byte("pong\n"))
						if once {
							return
						}
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

// ping dials the server with cfg, sends ping and expects pong.
func ping(addr string, cfg *tls.Config) (*tls.Conn, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		c.Close()
		return nil, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	if line != "pong\n" {
		c.Close()
		return nil, errors.New("unexpected answer " + line)
	}
	return c, nil
}

func (e *env) clientConfig(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{RootCAs: e.pool(), ServerName: "ms1.example.org"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// handshake runs one agent-port handshake with client (nil: none).
func (e *env) handshake(t testing.TB, cfg *ca.AgentServerConfig, client *tls.Certificate) error {
	t.Helper()
	s := e.serveAgents(t, cfg)
	c, err := ping(s.addr, e.clientConfig(client))
	if c != nil {
		c.Close()
	}
	return err
}

type refusalLog struct {
	mu sync.Mutex
	rs []ca.Refusal
}

func (l *refusalLog) add(r ca.Refusal) { l.mu.Lock(); l.rs = append(l.rs, r); l.mu.Unlock() }
func (l *refusalLog) all() []ca.Refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ca.Refusal(nil), l.rs...)
}

func TestAgentServerVerification(t *testing.T) {
	e := newEnv(t, nil)
	id := e.identity(t)
	_, good := e.issue(t, provider.RoleHost, []string{"agent.example"}, []net.IP{net.ParseIP("127.0.0.1")})
	_, clientOnly := e.issue(t, provider.RoleClient, []string{"agent2.example"}, nil)
	_, serverOnly := e.issue(t, provider.RoleServer, []string{"agent3.example"}, nil)
	revokedRes, revoked := e.issue(t, provider.RoleHost, []string{"agent4.example"}, nil)
	require.NoError(t, e.m.Revoke(context.Background(), &ca.RevokeRequest{Serial: revokedRes.Certificate.SerialNumber.Text(16)}))
	_, otherIP := e.issue(t, provider.RoleHost, []string{"agent5.example"}, []net.IP{net.ParseIP("192.0.2.9")})
	foreign := foreignCert(t)
	e.clock.Set(time.Now())
	_, expiring := e.issue(t, provider.RoleHost, []string{"agent6.example"}, nil)
	_ = expiring

	tests := []struct {
		name   string
		cfg    ca.AgentServerConfig
		client *tls.Certificate
		want   error // nil: accepted
		waived error // a refusal reported as waived
	}{
		{"good host cert", ca.AgentServerConfig{}, &good, nil, nil},
		{"client-only cert", ca.AgentServerConfig{}, &clientOnly, nil, nil},
		{"server-only cert", ca.AgentServerConfig{}, &serverOnly, ca.ErrIncompatibleUsage, nil},
		{"revoked", ca.AgentServerConfig{}, &revoked, ca.ErrRevoked, nil},
		{"foreign CA", ca.AgentServerConfig{}, &foreign, ca.ErrUnknownAuthority, nil},
		{"missing cert strict", ca.AgentServerConfig{}, nil, ca.ErrNoCertificate, nil},
		{"missing cert relaxed", ca.AgentServerConfig{InsecureAllowMissingClientCert: true}, nil, nil, ca.ErrNoCertificate},
		{"relaxed still checks a presented cert", ca.AgentServerConfig{InsecureAllowMissingClientCert: true}, &revoked, ca.ErrRevoked, nil},
		{"source IP matches", ca.AgentServerConfig{RequireSourceIP: true}, &good, nil, nil},
		{"source IP mismatch", ca.AgentServerConfig{RequireSourceIP: true}, &otherIP, ca.ErrIdentityMismatch, nil},
		{"source IP off by default", ca.AgentServerConfig{}, &otherIP, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var log refusalLog
			cfg := tc.cfg
			cfg.Identity = id
			cfg.OnRefusal = log.add
			err := e.handshake(t, &cfg, tc.client)
			rs := log.all()
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				require.NotEmpty(t, rs)
				assert.ErrorIs(t, rs[len(rs)-1].Err, tc.want)
				assert.False(t, rs[len(rs)-1].Waived)
			}
			if tc.waived != nil {
				require.Len(t, rs, 1)
				assert.True(t, rs[0].Waived)
				assert.ErrorIs(t, rs[0].Err, tc.waived)
				assert.NotNil(t, rs[0].RemoteAddr)
			}
			if tc.want == nil && tc.waived == nil {
				assert.Empty(t, rs)
			}
		})
	}
}

func TestAgentServerExpired(t *testing.T) {
	e := newEnv(t, nil)
	id := e.identity(t)
	res, cert := e.issue(t, provider.RoleHost, []string{"agent.example"}, nil)
	e.clock.Set(res.Certificate.NotAfter.Add(time.Hour))
	// The management certificate would be expired too at that time for a
	// Go client; the test client checks at the real time, so it accepts.
	var log refusalLog
	err := e.handshake(t, &ca.AgentServerConfig{Identity: id, OnRefusal: log.add}, &cert)
	require.Error(t, err)
	require.Len(t, log.all(), 1)
	assert.ErrorIs(t, log.all()[0].Err, ca.ErrExpired)

	var relaxed refusalLog
	err = e.handshake(t, &ca.AgentServerConfig{Identity: id, InsecureAllowExpired: true, OnRefusal: relaxed.add}, &cert)
	require.NoError(t, err)
	require.Len(t, relaxed.all(), 1)
	assert.True(t, relaxed.all()[0].Waived)
	assert.ErrorIs(t, relaxed.all()[0].Err, ca.ErrExpired)

	// Expired and revoked: the waiver covers the expiry only.
	require.NoError(t, e.m.Revoke(context.Background(), &ca.RevokeRequest{Serial: res.Certificate.SerialNumber.Text(16)}))
	err = e.handshake(t, &ca.AgentServerConfig{Identity: id, InsecureAllowExpired: true}, &cert)
	assert.Error(t, err)
}

// A certificate revoked after its first handshake is refused when the
// client resumes its session, in TLS 1.3 and TLS 1.2.
func TestAgentServerResumptionAfterRevocation(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			e := newEnv(t, nil)
			id := e.identity(t)
			res, cert := e.issue(t, provider.RoleHost, []string{"agent.example"}, nil)
			var log refusalLog
			s := e.serveAgents(t, &ca.AgentServerConfig{Identity: id, OnRefusal: log.add})
			cfg := e.clientConfig(&cert)
			cfg.MaxVersion = v
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			c, err := ping(s.addr, cfg)
			require.NoError(t, err)
			c.Close()
			c, err = ping(s.addr, cfg)
			require.NoError(t, err)
			assert.True(t, c.ConnectionState().DidResume, "the second connection resumes")
			c.Close()

			require.NoError(t, e.m.Revoke(context.Background(), &ca.RevokeRequest{Serial: res.Certificate.SerialNumber.Text(16)}))
			c, err = ping(s.addr, cfg)
			if c != nil {
				c.Close()
			}
			require.Error(t, err, "a resumed session with a revoked certificate is refused")
			rs := log.all()
			require.NotEmpty(t, rs)
			assert.ErrorIs(t, rs[len(rs)-1].Err, ca.ErrRevoked)
		})
	}
}

func TestActiveCertificates(t *testing.T) {
	e := newEnv(t, nil)
	id := e.identity(t)
	res, cert := e.issue(t, provider.RoleHost, []string{"agent.example"}, nil)
	s := e.serveAgents(t, &ca.AgentServerConfig{Identity: id})

	c, err := ping(s.addr, e.clientConfig(&cert))
	require.NoError(t, err)
	active := e.m.ActiveCertificates()
	require.Len(t, active, 1)
	assert.True(t, active[0].Certificate.Equal(res.Certificate))
	assert.Equal(t, c.LocalAddr().String(), active[0].RemoteAddr.String())
	c.Close()
	require.Eventually(t, func() bool { return len(e.m.ActiveCertificates()) == 0 }, 5*time.Second, 10*time.Millisecond, "closing removes the entry")

	// A failed handshake leaves nothing behind.
	foreign := foreignCert(t)
	_, err = ping(s.addr, e.clientConfig(&foreign))
	require.Error(t, err)
	assert.Empty(t, e.m.ActiveCertificates())

	// A connection accepted but never read is never listed: its
	// handshake never ran.
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err := e.m.NewAgentListener(inner, &ca.AgentServerConfig{Identity: id})
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := tls.Dial("tcp", inner.Addr().String(), e.clientConfig(&cert))
		if err == nil {
			c.Close()
		}
	}()
	conn, err := ln.Accept()
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	assert.Empty(t, e.m.ActiveCertificates())
	require.NoError(t, conn.Close())
	// A handshake after Close fails and registers nothing.
	assert.Error(t, conn.(*ca.AgentConn).Handshake())
	assert.Empty(t, e.m.ActiveCertificates())
}

func TestAgentServerTLSVersions(t *testing.T) {
	e := newEnv(t, nil)
	id := e.identity(t)
	_, cert := e.issue(t, provider.RoleHost, []string{"agent.example"}, nil)
	s := e.serveAgents(t, &ca.AgentServerConfig{Identity: id})
	cfg := e.clientConfig(&cert)
	cfg.MaxVersion = tls.VersionTLS11
	cfg.MinVersion = tls.VersionTLS10
	_, err := ping(s.addr, cfg)
	assert.Error(t, err, "TLS 1.1 is refused")
	_, err = e.m.AgentServerTLSConfig(&ca.AgentServerConfig{})
	assert.Error(t, err, "an identity is required")
}

// A connection whose peer went away leaves the active set at the read
// that finds it dead, even if the server has not closed it yet.
func TestActiveCertificatesPeerGone(t *testing.T) {
	e := newEnv(t, nil)
	id := e.identity(t)
	_, cert := e.issue(t, provider.RoleHost, []string{"agent.example"}, nil)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err := e.m.NewAgentListener(inner, &ca.AgentServerConfig{Identity: id})
	require.NoError(t, err)
	defer ln.Close()
	client := make(chan *tls.Conn, 1)
	go func() {
		c, err := tls.Dial("tcp", inner.Addr().String(), e.clientConfig(&cert))
		if err == nil {
			_, _ = c.Write([]byte("x"))
		}
		client <- c
	}()
	conn, err := ln.Accept()
	require.NoError(t, err)
	defer conn.Close()
	buf := make([]byte, 1)
	_, err = conn.Read(buf)
	require.NoError(t, err)
	require.Len(t, e.m.ActiveCertificates(), 1)
	c := <-client
	require.NotNil(t, c)
	c.Close()
	_, err = conn.Read(buf)
	require.Error(t, err)
	assert.Empty(t, e.m.ActiveCertificates(), "a dead connection is not listed")
	// Reading again does not list it again.
	_, _ = conn.Read(buf)
	assert.Empty(t, e.m.ActiveCertificates())
}
