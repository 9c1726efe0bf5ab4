package ca_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// agentPair connects a management-server session and an agent serving
// handle over an in-memory pipe. served receives ServeAgent's result.
func agentPair(t *testing.T, hello ca.AgentHello, handle ca.AgentHandler) (s *ca.AgentSession, served <-chan error) {
	t.Helper()
	srv, cli := net.Pipe()
	out := make(chan error, 1)
	go func() { out <- ca.ServeAgent(t.Context(), cli, hello, handle) }()
	s, err := ca.NewAgentSession(t.Context(), srv, nil)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, out
}

// TestAgentSessionProvision provisions a host over the in-band transport
// end to end: the agent's real keystore holds the issued certificate,
// the three commands arrived in order, and the agent's ServeAgent
// returned nil after the reload, so that it reconnects with the new
// certificate; the server sees the session end.
func TestAgentSessionProvision(t *testing.T) {
	e := newEnv(t, nil)
	agent := newMemAgent(t)
	s, served := agentPair(t, ca.AgentHello{HostID: "kvm1", Provision: true}, agent.Send)
	assert.Equal(t, ca.AgentHello{HostID: "kvm1", Provision: true}, s.Hello())

	res := provisionKVM1(t, e, ca.NewAgentHost(s), agent)
	require.Len(t, res.Certificate.IPAddresses, 1)
	assert.True(t, res.Certificate.IPAddresses[0].Equal(kvm1IP), "the address travelled in the setup command")

	select {
	case err := <-served:
		assert.NoError(t, err, "ServeAgent returns nil after a reload")
	case <-time.After(5 * time.Second):
		t.Fatal("ServeAgent did not return after the reload")
	}
	select {
	case <-s.Done():
		assert.ErrorIs(t, s.Err(), ca.ErrAgentSessionClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end when the agent closed")
	}
	_, err := s.Send(t.Context(), &ca.ReloadCommand{})
	assert.ErrorIs(t, err, ca.ErrAgentSessionClosed)
}

// TestAgentSessionCommandsRoundTrip: every field of every command
// reaches the agent as sent.
func TestAgentSessionCommandsRoundTrip(t *testing.T) {
	var mu sync.Mutex
	var got []ca.AgentCommand
	s, _ := agentPair(t, ca.AgentHello{}, func(_ context.Context, cmd ca.AgentCommand) (ca.AgentAnswer, error) {
		mu.Lock()
		got = append(got, cmd)
		mu.Unlock()
		switch cmd.(type) {
		case *ca.SetupKeystoreCommand:
			return &ca.SetupKeystoreAnswer{CSRPEM: []byte("-----BEGIN CERTIFICATE REQUEST-----\n")}, nil
		case *ca.SetupCertificateCommand:
			return &ca.SetupCertificateAnswer{}, nil
		}
		return &ca.ReloadAnswer{}, nil
	})
	setup := &ca.SetupKeystoreCommand{Setup: ca.KeystoreSetup{
		DNSNames:     []string{"kvm1.example.org", "kvm1"},
		IPAddresses:  []net.IP{net.ParseIP("192.0.2.10").To4(), net.ParseIP("2001:db8::1")},
		KeyAlgorithm: provider.KeyAlgorithmRSA, KeySize: 3072,
	}}
	install := &ca.SetupCertificateCommand{Install: ca.CertificateInstall{
		CertificatePEM: []byte("cert\n"), CABundlePEM: []byte("ca1\nca2\n"), Serial: "0a:1b",
	}}
	ans, err := s.Send(t.Context(), setup)
	require.NoError(t, err)
	assert.Equal(t, &ca.SetupKeystoreAnswer{CSRPEM: []byte("-----BEGIN CERTIFICATE REQUEST-----\n")}, ans)
	ans, err = s.Send(t.Context(), install)
	require.NoError(t, err)
	assert.Equal(t, &ca.SetupCertificateAnswer{}, ans)
	ans, err = s.Send(t.Context(), &ca.ReloadCommand{})
	require.NoError(t, err)
	assert.Equal(t, &ca.ReloadAnswer{}, ans)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 3)
	assert.Equal(t, setup, got[0])
	assert.Equal(t, install, got[1])
	assert.Equal(t, &ca.ReloadCommand{}, got[2])
}

// TestAgentSessionAgentFailure: a failure the agent reports is an
// *AgentCommandError naming the command, with the agent's text bounded,
// and the session goes on.
func TestAgentSessionAgentFailure(t *testing.T) {
	long := strings.Repeat("x", 10<<10)
	fail := true
	s, _ := agentPair(t, ca.AgentHello{}, func(_ context.Context, cmd ca.AgentCommand) (ca.AgentAnswer, error) {
		if fail {
			fail = false
			return nil, errors.New("keystore: cloud.jks does not open: " + long)
		}
		return &ca.SetupCertificateAnswer{}, nil
	})
	_, err := s.Send(t.Context(), &ca.SetupKeystoreCommand{})
	var ce *ca.AgentCommandError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "SetupKeystoreCommand", ce.Command)
	assert.True(t, strings.HasPrefix(ce.Message, "keystore: cloud.jks does not open: "))
	assert.Less(t, len(ce.Message), 2<<10)

	_, err = s.Send(t.Context(), &ca.SetupCertificateCommand{Install: ca.CertificateInstall{CertificatePEM: []byte("c"), CABundlePEM: []byte("b")}})
	assert.NoError(t, err, "the session survives an agent's failure")
}

// TestAgentSessionBadHello: a connection that does not start with a
// valid hello is refused with an error and closed.
func TestAgentSessionBadHello(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{name: "not a hello", input: `{"id":1,"kind":"answer","body":{}}` + "\n", want: `expected a hello, got a "answer" message`},
		{name: "other version", input: `{"kind":"hello","body":{"version":2}}` + "\n", want: "version 2"},
		{name: "unknown field", input: `{"kind":"hello","body":{"version":1,"password":"x"}}` + "\n", want: "unknown field"},
		{name: "no kind", input: `{"body":{}}` + "\n", want: "no kind"},
		{name: "not JSON", input: "SSH-2.0-OpenSSH_9.2\n", want: "malformed message"},
		{name: "cut short", input: `{"kind":"hello"`, want: "unexpected EOF"},
		{name: "two messages on a line", input: `{"kind":"hello","body":{"version":1}} {"id":1,"kind":"answer"}` + "\n", want: "trailing data"},
		{name: "empty", input: "", want: "EOF"},
		{name: "endless line", input: strings.Repeat("a", 2<<20), want: "over 1048576 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn := &scriptConn{r: strings.NewReader(tc.input)}
			_, err := ca.NewAgentSession(t.Context(), conn, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, conn.isClosed(), "the connection is closed")
		})
	}
	t.Run("silent agent", func(t *testing.T) {
		srv, cli := net.Pipe()
		defer cli.Close()
		start := time.Now()
		_, err := ca.NewAgentSession(t.Context(), srv, &ca.AgentSessionOptions{HelloTimeout: 100 * time.Millisecond})
		require.Error(t, err)
		assert.Less(t, time.Since(start), 5*time.Second)
	})
}

// TestAgentSessionEnds: commands waiting when the agent goes away, or
// sent afterwards, fail with ErrAgentSessionClosed; a done context ends
// a wait with its error; a hostile agent's unexpected message ends the
// session.
func TestAgentSessionEnds(t *testing.T) {
	t.Run("agent gone while waiting", func(t *testing.T) {
		release, received := make(chan struct{}), make(chan struct{})
		s, _ := agentPair(t, ca.AgentHello{}, func(ctx context.Context, _ ca.AgentCommand) (ca.AgentAnswer, error) {
			close(received)
			<-release
			return nil, io.EOF
		})
		errc := make(chan error, 1)
		go func() { _, err := s.Send(t.Context(), &ca.ReloadCommand{}); errc <- err }()
		<-received // Send is waiting for the answer
		require.NoError(t, s.Close())
		close(release)
		select {
		case err := <-errc:
			assert.ErrorIs(t, err, ca.ErrAgentSessionClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("Send did not return when the session closed")
		}
	})
	t.Run("context done", func(t *testing.T) {
		block := make(chan struct{})
		defer close(block)
		s, _ := agentPair(t, ca.AgentHello{}, func(ctx context.Context, _ ca.AgentCommand) (ca.AgentAnswer, error) {
			<-block
			return &ca.ReloadAnswer{}, nil
		})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := s.Send(ctx, &ca.ReloadCommand{})
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("context done before sending", func(t *testing.T) {
		// A caller whose context is over sends nothing and leaves the
		// session alone: the agent's connection is not its to end.
		s, _ := agentPair(t, ca.AgentHello{}, func(context.Context, ca.AgentCommand) (ca.AgentAnswer, error) {
			return &ca.ReloadAnswer{}, nil
		})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := s.Send(ctx, &ca.ReloadCommand{})
		assert.ErrorIs(t, err, context.Canceled)
		assert.NoError(t, s.Err())
		ans, err := s.Send(t.Context(), &ca.ReloadCommand{})
		require.NoError(t, err, "the session survives a caller's done context")
		assert.Equal(t, &ca.ReloadAnswer{}, ans)
	})
	t.Run("unexpected message", func(t *testing.T) {
		conn := &scriptConn{r: strings.NewReader(`{"kind":"hello","body":{"version":1}}` + "\n" + `{"id":1,"kind":"command","name":"ReloadCommand"}` + "\n")}
		s, err := ca.NewAgentSession(t.Context(), conn, nil)
		require.NoError(t, err)
		select {
		case <-s.Done():
			assert.ErrorContains(t, s.Err(), `agent sent a "command" message`)
		case <-time.After(5 * time.Second):
			t.Fatal("the session did not end")
		}
	})
}

// TestServeAgentHostileServer: commands the agent cannot decode are
// answered with an error, never handed to the handler; a message that is
// not a command ends ServeAgent with an error; a done context ends it
// with the context's error.
func TestServeAgentHostileServer(t *testing.T) {
	input, err := os.ReadFile(filepath.Join("testdata", "agentwire-server-bad.jsonl"))
	require.NoError(t, err)
	conn := &scriptConn{r: bytes.NewReader(input)}
	called := 0
	err = ca.ServeAgent(t.Context(), conn, ca.AgentHello{HostID: "kvm1"}, func(context.Context, ca.AgentCommand) (ca.AgentAnswer, error) {
		called++
		return &ca.ReloadAnswer{}, nil
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `server sent a "answer" message`)
	assert.Zero(t, called, "no bad command reaches the handler")
	out := conn.w.String()
	assert.Contains(t, out, `"kind":"hello"`)
	assert.Contains(t, out, `unknown command \"RebootCommand\"`)
	assert.Contains(t, out, `\"not-an-ip\" is not an IP address`)
	assert.Contains(t, out, `unknown field \"password\"`)
	assert.Equal(t, 4, strings.Count(out, "\n"), "the hello and three error answers")
	assert.True(t, conn.isClosed())

	t.Run("context done", func(t *testing.T) {
		srv, cli := net.Pipe()
		defer srv.Close()
		go io.Copy(io.Discard, srv)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		err := ca.ServeAgent(ctx, cli, ca.AgentHello{}, func(context.Context, ca.AgentCommand) (ca.AgentAnswer, error) { return nil, nil })
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

// TestRevokedAgentDisconnected: an agent connected on the agent port is
// disconnected as soon as its certificate is revoked through the
// Manager, and its next handshake is refused; another agent stays
// connected.
func TestRevokedAgentDisconnected(t *testing.T) {
	e := newEnv(t, nil)
	e.clock.Set(time.Now())
	s := e.serveAgents(t, &ca.AgentServerConfig{Identity: e.identity(t)})
	resA, certA := e.issue(t, provider.RoleHost, []string{"kvm1.example.org"}, nil)
	_, certB := e.issue(t, provider.RoleHost, []string{"kvm2.example.org"}, nil)
	connA, err := ping(s.addr, e.clientConfig(&certA))
	require.NoError(t, err)
	defer connA.Close()
	connB, err := ping(s.addr, e.clientConfig(&certB))
	require.NoError(t, err)
	defer connB.Close()
	require.Len(t, e.m.ActiveCertificates(), 2)

	start := time.Now()
	require.NoError(t, e.m.Revoke(t.Context(), &ca.RevokeRequest{Serial: provider.FormatSerial(resA.Certificate.SerialNumber)}))
	_ = connA.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = connA.Read(make([]byte, 1))
	require.Error(t, err, "the revoked agent's connection is closed")
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "closed, not timed out: %v", err)
	t.Logf("revocation to disconnection: %v", time.Since(start))
	assert.Less(t, time.Since(start), time.Second)

	_, err = ping(s.addr, e.clientConfig(&certA))
	assert.Error(t, err, "the revoked certificate's next handshake is refused")
	_ = connB.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = connB.Write([]byte("ping\n"))
	require.NoError(t, err)
	line := make([]byte, 5)
	_, err = io.ReadFull(connB, line)
	require.NoError(t, err, "the other agent stays connected")
	assert.Equal(t, "pong\n", string(line))
	require.Len(t, e.m.ActiveCertificates(), 1)
}

// scriptConn reads a script and records what is written.
type scriptConn struct {
	mu     sync.Mutex
	r      io.Reader
	w      bytes.Buffer
	closed bool
}

func (c *scriptConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(b)
}

func (c *scriptConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(b)
}

func (c *scriptConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *scriptConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// FuzzAgentSession: whatever an agent sends (its hello, then answers),
// the server side never panics: NewAgentSession fails with an error or a
// command gets an answer or an error. Seeded from testdata/agentwire-agent-*.
func FuzzAgentSession(f *testing.F) {
	addSeedFiles(f, "agentwire-agent-*.jsonl")
	f.Fuzz(func(t *testing.T, input []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := ca.NewAgentSession(ctx, &scriptConn{r: bytes.NewReader(input)}, nil)
		if err != nil {
			return
		}
		defer s.Close()
		ans, err := ca.NewAgentHost(s).SetupKeystore(ctx, &ca.KeystoreSetup{})
		if err == nil {
			assert.Contains(t, string(ans), "-----BEGIN CERTIFICATE REQUEST-----")
		}
		assert.NoError(t, ctx.Err(), "Send returned because the input ended, not by the timeout")
	})
}

// FuzzServeAgent: whatever a server sends, the agent side never panics
// and hands the handler only commands it decoded. Seeded from
// testdata/agentwire-server-*.
func FuzzServeAgent(f *testing.F) {
	addSeedFiles(f, "agentwire-server-*.jsonl")
	f.Fuzz(func(t *testing.T, input []byte) {
		conn := &scriptConn{r: bytes.NewReader(input)}
		_ = ca.ServeAgent(context.Background(), conn, ca.AgentHello{}, func(_ context.Context, cmd ca.AgentCommand) (ca.AgentAnswer, error) {
			switch c := cmd.(type) {
			case *ca.SetupKeystoreCommand:
				require.NotNil(t, c)
				return &ca.SetupKeystoreAnswer{CSRPEM: []byte("csr")}, nil
			case *ca.SetupCertificateCommand:
				require.NotEmpty(t, c.Install.CertificatePEM)
				return &ca.SetupCertificateAnswer{}, nil
			case *ca.ReloadCommand:
				return &ca.ReloadAnswer{}, nil
			}
			t.Fatalf("handler got %T", cmd)
			return nil, nil
		})
		assert.True(t, conn.isClosed())
	})
}

// TestRevokedAgentDisconnectedAcrossManagers: two management servers on
// one store; an agent connected to B is disconnected within a second of
// a revocation made through A (B learns of it from its provider's
// revocation notice).
func TestRevokedAgentDisconnectedAcrossManagers(t *testing.T) {
	ctx := t.Context()
	store := rootca.NewMemStore()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	creator, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: rootca.Options{Signer: key, RevocationPollInterval: -1}})
	require.NoError(t, err)
	t.Cleanup(func() { creator.Close() })
	manager := func() *ca.Manager {
		reg := &provider.Registry{}
		require.NoError(t, reg.Register("root", "kvmpki built-in CA", func(ctx context.Context) (provider.Provider, error) {
			return rootca.Open(ctx, sharedStore{store}, &rootca.Options{Signer: key})
		}))
		m, err := ca.New(ctx, reg, nil)
		require.NoError(t, err)
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b := manager(), manager()
	id, err := b.NewIdentity(ctx, &ca.IdentityOptions{Hostname: "ms2.example.org"})
	require.NoError(t, err)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err := b.NewAgentListener(inner, &ca.AgentServerConfig{Identity: id})
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c) // reads run the handshake and notice the close
		}
	}()

	res, err := creator.Issue(ctx, &provider.IssueRequest{DNSNames: []string{"kvm1.example.org"}, Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	require.NoError(t, err)
	cert, err := res.TLSCertificate()
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(creator.Certificate())
	conn, err := tls.Dial("tcp", inner.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "ms2.example.org", Certificates: []tls.Certificate{cert}})
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("hello\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(b.ActiveCertificates()) == 1 }, 5*time.Second, 10*time.Millisecond)

	start := time.Now()
	require.NoError(t, a.Revoke(ctx, &ca.RevokeRequest{Serial: provider.FormatSerial(res.Certificate.SerialNumber)}))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "closed by B, not timed out: %v", err)
	t.Logf("revocation through A to disconnection from B: %v", time.Since(start))
	assert.Less(t, time.Since(start), time.Second)
	assert.Empty(t, b.ActiveCertificates())
}

// TestRevokedDuringHandshake: a certificate revoked after the agent port
// verified it but before its connection was listed (the revocation's
// sweep of the listed connections missed it) is caught when the
// connection is listed: the connection is closed, not left open for as
// long as the agent keeps it.
func TestRevokedDuringHandshake(t *testing.T) {
	e := newEnv(t, nil)
	e.clock.Set(time.Now())
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err := e.m.NewAgentListener(inner, &ca.AgentServerConfig{Identity: e.identity(t)})
	require.NoError(t, err)
	defer ln.Close()
	res, cert := e.issue(t, provider.RoleHost, []string{"kvm1.example.org"}, nil)

	accepted := make(chan *ca.AgentConn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		ac := c.(*ca.AgentConn)
		// The TLS handshake alone (verification included), without the
		// listing that AgentConn.HandshakeContext adds.
		if err := ac.Conn.HandshakeContext(context.Background()); err != nil {
			ac.Close()
			close(accepted)
			return
		}
		accepted <- ac
	}()
	client, err := tls.Dial("tcp", inner.Addr().String(), e.clientConfig(&cert))
	require.NoError(t, err)
	defer client.Close()
	ac, ok := <-accepted
	require.True(t, ok, "the server's handshake failed")
	defer ac.Close()

	require.NoError(t, e.m.Revoke(t.Context(), &ca.RevokeRequest{Serial: provider.FormatSerial(res.Certificate.SerialNumber)}))
	err = ac.HandshakeContext(t.Context()) // lists the connection
	assert.ErrorIs(t, err, ca.ErrRevoked)
	assert.Empty(t, e.m.ActiveCertificates(), "the revoked agent is not listed")
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = client.Read(make([]byte, 1))
	require.Error(t, err, "the revoked agent's connection is closed")
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "closed, not timed out: %v", err)
}
