package ca_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

// writeAtomic replaces path by a rename, as a renewal does.
func writeAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func (e *env) agentFiles(t testing.TB, dns []string) (ca.AgentCredentialFiles, *provider.IssueResult) {
	t.Helper()
	dir := t.TempDir()
	f := ca.AgentCredentialFiles{CertFile: filepath.Join(dir, "cloud.crt"), KeyFile: filepath.Join(dir, "cloud.key"), CAFile: filepath.Join(dir, "cloud.ca.crt")}
	res := e.writeCreds(t, f, dns)
	writeAtomic(t, f.CAFile, provider.EncodeCertificates(e.caCert))
	return f, res
}

func (e *env) writeCreds(t testing.TB, f ca.AgentCredentialFiles, dns []string) *provider.IssueResult {
	t.Helper()
	res, _ := e.issue(t, provider.RoleHost, dns, nil)
	chain, err := res.ChainPEM()
	require.NoError(t, err)
	key, err := res.KeyPEM()
	require.NoError(t, err)
	writeAtomic(t, f.CertFile, chain)
	writeAtomic(t, f.KeyFile, key)
	return res
}

func TestAgentCredentialsMissing(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []ca.AgentCredentialFiles{
		{},
		{CertFile: filepath.Join(dir, "a"), KeyFile: filepath.Join(dir, "b"), CAFile: filepath.Join(dir, "c")},
	} {
		_, err := ca.LoadAgentCredentials(f)
		assert.ErrorIs(t, err, ca.ErrNoCredentials)
	}
	var d ca.Dialer
	_, err := d.DialContext(context.Background(), "127.0.0.1")
	assert.ErrorIs(t, err, ca.ErrNoCredentials)
}

func TestAgentCredentialsReload(t *testing.T) {
	e := newEnv(t, nil)
	id := e.identity(t)
	s := e.serveAgents(t, &ca.AgentServerConfig{Identity: id})
	files, first := e.agentFiles(t, []string{"agent.example"})
	creds, err := ca.LoadAgentCredentials(files)
	require.NoError(t, err)
	host, _, _ := net.SplitHostPort(s.addr)

	dial := func() *tls.Conn {
		t.Helper()
		cfg, err := creds.TLSConfig(host)
		require.NoError(t, err)
		c, err := tls.Dial("tcp", s.addr, cfg)
		require.NoError(t, err)
		_, err = c.Write([]byte("ping\n"))
		require.NoError(t, err)
		buf := make([]byte, 5)
		_, err = c.Read(buf)
		require.NoError(t, err)
		return c
	}
	presented := func() []byte {
		t.Helper()
		active := e.m.ActiveCertificates()
		require.Len(t, active, 1)
		return active[0].Certificate.Raw
	}
	c := dial()
	assert.Equal(t, first.Certificate.Raw, presented())
	c.Close()
	require.Eventually(t, func() bool { return len(e.m.ActiveCertificates()) == 0 }, 5*time.Second, 10*time.Millisecond)

	// Renewed by atomic renames: seen at the next handshake.
	second := e.writeCreds(t, files, []string{"agent.example"})
	c = dial()
	assert.Equal(t, second.Certificate.Raw, presented())
	c.Close()
	require.Eventually(t, func() bool { return len(e.m.ActiveCertificates()) == 0 }, 5*time.Second, 10*time.Millisecond)

	// A new certificate whose key has not landed yet (mismatch), then a
	// half-written key: the last good pair stays.
	third, _ := e.issue(t, provider.RoleHost, []string{"agent.example"}, nil)
	chain, _ := third.ChainPEM()
	writeAtomic(t, files.CertFile, chain)
	c = dial()
	assert.Equal(t, second.Certificate.Raw, presented(), "mismatched pair not used")
	c.Close()
	require.Eventually(t, func() bool { return len(e.m.ActiveCertificates()) == 0 }, 5*time.Second, 10*time.Millisecond)
	key, _ := third.KeyPEM()
	require.NoError(t, os.WriteFile(files.KeyFile, key[:len(key)/2], 0o600))
	c = dial()
	assert.Equal(t, second.Certificate.Raw, presented(), "half-written key not used")
	c.Close()
	require.Eventually(t, func() bool { return len(e.m.ActiveCertificates()) == 0 }, 5*time.Second, 10*time.Millisecond)
	writeAtomic(t, files.KeyFile, key)
	c = dial()
	assert.Equal(t, third.Certificate.Raw, presented(), "the whole pair is used once it is there")
	c.Close()

	// A garbled CA file keeps the previous one.
	writeAtomic(t, files.CAFile, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n"))
	c = dial()
	c.Close()
}

func TestAgentClientVerifiesServerName(t *testing.T) {
	e := newEnv(t, nil)
	id := e.identity(t) // names ms1.example.org, cloudstack.internal, 127.0.0.1
	s := e.serveAgents(t, &ca.AgentServerConfig{Identity: id})
	files, _ := e.agentFiles(t, []string{"agent.example"})
	creds, err := ca.LoadAgentCredentials(files)
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(s.addr)
	tests := []struct {
		name, server string
		ok           bool
	}{
		{"ip", "127.0.0.1", true},
		{"wrong name", "other.example.org", false},
		{"wrong ip", "127.0.0.2", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := creds.TLSConfig(tc.server)
			require.NoError(t, err)
			c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", port), cfg)
			if tc.ok {
				require.NoError(t, err)
				c.Close()
			} else {
				assert.Error(t, err)
			}
		})
	}
	_, err = creds.TLSConfig("")
	assert.Error(t, err)
}

func TestDialerFailover(t *testing.T) {
	e := newEnv(t, nil)
	id := e.identity(t)
	good := e.serveAgents(t, &ca.AgentServerConfig{Identity: id})
	// A server whose certificate names another host.
	_, wrongCert := e.issue(t, provider.RoleServer, []string{"elsewhere.example"}, nil)
	wrongLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{wrongCert}})
	require.NoError(t, err)
	defer wrongLn.Close()
	go func() {
		for {
			c, err := wrongLn.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	// A server that is down.
	downLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := downLn.Addr().String()
	downLn.Close()

	hosts := []string{down, wrongLn.Addr().String(), good.addr}
	list := hosts[0] + "," + hosts[1] + " , " + hosts[2]
	// Find a seed whose shuffle puts them in the order down, wrong, good.
	var seed uint64
	for seed = 1; ; seed++ {
		l := []string{hosts[0], hosts[1], hosts[2]}
		rand.New(rand.NewPCG(seed, seed)).Shuffle(3, func(i, j int) { l[i], l[j] = l[j], l[i] })
		if l[0] == hosts[0] && l[1] == hosts[1] {
			break
		}
	}
	files, _ := e.agentFiles(t, []string{"agent.example"})
	creds, err := ca.LoadAgentCredentials(files)
	require.NoError(t, err)
	var logBuf bytes.Buffer
	d := &ca.Dialer{Credentials: creds, Rand: rand.New(rand.NewPCG(seed, seed)), InitialBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))}
	c, err := d.DialContext(context.Background(), list)
	require.NoError(t, err)
	assert.Equal(t, good.addr, c.RemoteAddr().String())
	assert.Equal(t, 2, strings.Count(logBuf.String(), "unreachable"), "the down and the wrong-name servers were tried first:\n%s", logBuf.String())
	c.Close()

	// Without the good server: every attempt's error is reported.
	d2 := &ca.Dialer{Credentials: creds, Rand: rand.New(rand.NewPCG(seed, seed)), InitialBackoff: time.Millisecond, Attempts: 4}
	_, err = d2.DialContext(context.Background(), hosts[0]+","+hosts[1])
	var derr *ca.DialError
	require.ErrorAs(t, err, &derr)
	assert.Len(t, derr.Attempts, 4)
	assert.ErrorContains(t, err, "connection refused")
	assert.ErrorContains(t, err, "doesn't contain any IP SANs", "the wrong-name server is refused")

	// The context ends the retries.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	d3 := &ca.Dialer{Credentials: creds, InitialBackoff: time.Hour, Attempts: 100}
	start := time.Now()
	_, err = d3.DialContext(ctx, down)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}
