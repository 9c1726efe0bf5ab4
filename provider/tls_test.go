package provider_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// fakeVerifier is a PeerVerifier that records its requests and refuses
// every peer while refuse is set.
type fakeVerifier struct {
	mu     sync.Mutex
	reqs   []provider.VerifyRequest
	refuse error
	// deadlines records whether each call's context had a deadline.
	deadlines []bool
	// budgets records the time left before each call's deadline.
	budgets []time.Duration
}

func (f *fakeVerifier) VerifyPeer(ctx context.Context, req *provider.VerifyRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, *req)
	d, ok := ctx.Deadline()
	f.deadlines = append(f.deadlines, ok)
	f.budgets = append(f.budgets, time.Until(d))
	return f.refuse
}

func (f *fakeVerifier) setRefuse(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse = err
}

func (f *fakeVerifier) requests() []provider.VerifyRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]provider.VerifyRequest(nil), f.reqs...)
}

var errRefused = errors.New("fake: peer refused")

// handshakeResult is the outcome of one TLS connection.
type handshakeResult struct {
	client, server       tls.ConnectionState
	clientErr, serverErr error
}

// handshake connects a client to a server over loopback TCP (net.Pipe can
// deadlock on TLS 1.3 post-handshake messages). After the handshake the
// server writes one byte, which the client reads: that delivers the
// server's refusal of the client certificate and the TLS 1.3 session
// tickets to the client.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	var res handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			res.serverErr = err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		srv := tls.Server(conn, serverCfg)
		if res.serverErr = srv.Handshake(); res.serverErr != nil {
			return
		}
		res.server = srv.ConnectionState()
		_, res.serverErr = srv.Write([]byte{'x'})
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	cli := tls.Client(conn, clientCfg)
	res.clientErr = cli.Handshake()
	if res.clientErr == nil {
		_, res.clientErr = io.ReadFull(cli, make([]byte, 1))
		res.client = cli.ConnectionState()
	}
	<-done
	return res
}

// tlsFixture holds a server and a client identity from one test CA.
type tlsFixture struct {
	pki            *testPKI
	server, client tls.Certificate
}

func newTLSFixture(t *testing.T) *tlsFixture {
	pki := newTestPKI(t)
	return &tlsFixture{
		pki:    pki,
		server: pki.leaf(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, "server.test", "127.0.0.1"),
		client: pki.leaf(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, "client.test"),
	}
}

func TestVerifyClientConnection(t *testing.T) {
	fx := newTLSFixture(t)
	tests := []struct {
		name       string
		clientAuth tls.ClientAuthType
		noCert     bool
		refuse     error
	}{
		{name: "accepted", clientAuth: tls.RequireAnyClientCert},
		{name: "refused", clientAuth: tls.RequireAnyClientCert, refuse: errRefused},
		{name: "no certificate passed on", clientAuth: tls.RequestClientCert, noCert: true},
		{name: "no certificate refused", clientAuth: tls.RequestClientCert, noCert: true, refuse: errRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := &fakeVerifier{refuse: tc.refuse}
			serverCfg := &tls.Config{
				Certificates:     []tls.Certificate{fx.server},
				ClientAuth:       tc.clientAuth,
				VerifyConnection: provider.VerifyClientConnection(v, nil),
			}
			clientCfg := &tls.Config{RootCAs: fx.pki.pool, ServerName: "server.test"}
			if !tc.noCert {
				clientCfg.Certificates = []tls.Certificate{fx.client}
			}
			res := handshake(t, serverCfg, clientCfg)

			reqs := v.requests()
			require.Len(t, reqs, 1)
			assert.Equal(t, provider.UsageClientAuth, reqs[0].Usage)
			assert.Empty(t, reqs[0].ServerName, "no name is checked for clients")
			assert.True(t, reqs[0].Time.IsZero())
			assert.Equal(t, []bool{true}, v.deadlines, "the hook bounds the call")
			if tc.noCert {
				assert.Empty(t, reqs[0].Certificates)
			} else {
				require.Len(t, reqs[0].Certificates, 1)
				assert.True(t, fx.client.Leaf.Equal(reqs[0].Certificates[0]))
			}

			if tc.refuse == nil {
				require.NoError(t, res.serverErr)
				require.NoError(t, res.clientErr)
				return
			}
			// The refusal is the server's handshake error, and the
			// client learns of it as an alert.
			assert.ErrorIs(t, res.serverErr, tc.refuse)
			require.Error(t, res.clientErr)
			assert.Contains(t, res.clientErr.Error(), "bad certificate")
		})
	}
}

func TestVerifyServerConnection(t *testing.T) {
	fx := newTLSFixture(t)
	tests := []struct {
		name string
		// sni is the client's tls.Config.ServerName; dialled the name
		// given to VerifyServerConnection.
		sni, dialled string
		refuse       error
		// wantCalls is false when the hook must refuse without asking
		// the verifier.
		noCall  bool
		wantErr string
	}{
		{name: "dns name", sni: "server.test", dialled: "server.test"},
		{name: "refused", sni: "server.test", dialled: "server.test", refuse: errRefused},
		// crypto/tls sends no SNI for IP literals: the dialled name is
		// the only one the hook can check.
		{name: "ip address", sni: "127.0.0.1", dialled: "127.0.0.1"},
		{name: "ip address, refused", sni: "127.0.0.1", dialled: "127.0.0.1", refuse: errRefused},
		// The SNI is never a substitute for the name.
		{name: "no name", sni: "server.test", noCall: true, wantErr: "needs the name or address that was dialled"},
		{name: "no name, ip address", sni: "127.0.0.1", noCall: true, wantErr: "needs the name or address that was dialled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := &fakeVerifier{refuse: tc.refuse}
			serverCfg := &tls.Config{Certificates: []tls.Certificate{fx.server}}
			clientCfg := &tls.Config{
				RootCAs:          fx.pki.pool,
				ServerName:       tc.sni,
				VerifyConnection: provider.VerifyServerConnection(v, tc.dialled, nil),
			}
			res := handshake(t, serverCfg, clientCfg)

			reqs := v.requests()
			if tc.noCall {
				assert.Empty(t, reqs, "the verifier must not be asked")
				require.Error(t, res.clientErr)
				assert.Contains(t, res.clientErr.Error(), tc.wantErr)
				assert.Error(t, res.serverErr)
				return
			}
			require.Len(t, reqs, 1)
			assert.Equal(t, provider.UsageServerAuth, reqs[0].Usage)
			assert.Equal(t, tc.dialled, reqs[0].ServerName)
			require.NotEmpty(t, reqs[0].Certificates)
			assert.True(t, fx.server.Leaf.Equal(reqs[0].Certificates[0]))
			if tc.refuse == nil {
				assert.NoError(t, res.clientErr)
				assert.NoError(t, res.serverErr)
				return
			}
			assert.ErrorIs(t, res.clientErr, tc.refuse)
			assert.Error(t, res.serverErr)
		})
	}
}

// chainVerifier is a PeerVerifier built on provider.VerifyChain, as a
// third-party provider would write one.
type chainVerifier struct{ roots *x509.CertPool }

func (c chainVerifier) VerifyPeer(_ context.Context, req *provider.VerifyRequest) error {
	if err := req.Check(); err != nil {
		return err
	}
	if len(req.Certificates) == 0 {
		return &provider.VerifyError{Err: provider.ErrNoCertificate}
	}
	_, err := provider.VerifyChain(req.Certificates[0], req.Certificates[1:], c.roots,
		&provider.VerifyChainOptions{Usage: req.Usage, ServerName: req.ServerName, Time: req.Time})
	return err
}

// TestVerifyServerConnectionIPAddress dials a server by IP address with
// crypto/tls's own checks off (as a VNC client over VeNCrypt does): the
// server presents a valid serverAuth certificate of another host, which
// only the name given to the hook exposes, since no SNI is sent.
func TestVerifyServerConnectionIPAddress(t *testing.T) {
	fx := newTLSFixture(t)
	other := fx.pki.leaf(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, "other.test", "10.0.0.9")
	v := chainVerifier{roots: fx.pki.pool}
	tests := []struct {
		name    string
		cert    tls.Certificate
		wantErr error
	}{
		{name: "the host dialled", cert: fx.server},
		{name: "another host", cert: other, wantErr: provider.ErrNameMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := handshake(t, &tls.Config{Certificates: []tls.Certificate{tc.cert}}, &tls.Config{
				InsecureSkipVerify: true,
				VerifyConnection:   provider.VerifyServerConnection(v, "127.0.0.1", nil),
			})
			if tc.wantErr == nil {
				assert.NoError(t, res.clientErr)
				return
			}
			assert.ErrorIs(t, res.clientErr, tc.wantErr)
			var ve *provider.VerifyError
			assert.ErrorAs(t, res.clientErr, &ve)
		})
	}
}

func TestVerifyConnectionTimeout(t *testing.T) {
	fx := newTLSFixture(t)
	tests := []struct {
		name     string
		opts     *provider.VerifyConnectionOptions
		min, max time.Duration
	}{
		{name: "nil options", opts: nil, min: 9 * time.Second, max: 10 * time.Second},
		{name: "zero", opts: &provider.VerifyConnectionOptions{}, min: 9 * time.Second, max: 10 * time.Second},
		{name: "negative", opts: &provider.VerifyConnectionOptions{Timeout: -time.Second}, min: 9 * time.Second, max: 10 * time.Second},
		{name: "set", opts: &provider.VerifyConnectionOptions{Timeout: 2 * time.Second}, min: time.Second, max: 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sv, cv := &fakeVerifier{}, &fakeVerifier{}
			res := handshake(t, &tls.Config{
				Certificates:     []tls.Certificate{fx.server},
				ClientAuth:       tls.RequireAnyClientCert,
				VerifyConnection: provider.VerifyClientConnection(sv, tc.opts),
			}, &tls.Config{
				Certificates:     []tls.Certificate{fx.client},
				RootCAs:          fx.pki.pool,
				ServerName:       "server.test",
				VerifyConnection: provider.VerifyServerConnection(cv, "server.test", tc.opts),
			})
			require.NoError(t, res.clientErr)
			require.NoError(t, res.serverErr)
			for _, f := range []*fakeVerifier{sv, cv} {
				require.Len(t, f.budgets, 1)
				assert.Greater(t, f.budgets[0], tc.min)
				assert.LessOrEqual(t, f.budgets[0], tc.max)
			}
		})
	}
}

// TestVerifyConnectionResumed is why the hooks exist: they, and so the
// provider's revocation check, run on resumed sessions, which skip
// certificate verification and VerifyPeerCertificate.
func TestVerifyConnectionResumed(t *testing.T) {
	fx := newTLSFixture(t)
	tests := []struct {
		name    string
		version uint16
	}{
		{name: "TLS 1.3", version: tls.VersionTLS13},
		{name: "TLS 1.2", version: tls.VersionTLS12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			serverV, clientV := &fakeVerifier{}, &fakeVerifier{}
			// resumed records, per hook call, whether the handshake
			// resumed a session.
			var mu sync.Mutex
			var serverResumed, clientResumed []bool
			record := func(to *[]bool, hook func(tls.ConnectionState) error) func(tls.ConnectionState) error {
				return func(cs tls.ConnectionState) error {
					mu.Lock()
					*to = append(*to, cs.DidResume)
					mu.Unlock()
					return hook(cs)
				}
			}
			serverCfg := &tls.Config{
				Certificates:     []tls.Certificate{fx.server},
				ClientAuth:       tls.RequireAnyClientCert,
				MinVersion:       tc.version,
				MaxVersion:       tc.version,
				VerifyConnection: record(&serverResumed, provider.VerifyClientConnection(serverV, nil)),
			}
			clientCfg := &tls.Config{
				Certificates:       []tls.Certificate{fx.client},
				RootCAs:            fx.pki.pool,
				ServerName:         "server.test",
				ClientSessionCache: tls.NewLRUClientSessionCache(4),
				VerifyConnection:   record(&clientResumed, provider.VerifyServerConnection(clientV, "server.test", nil)),
			}

			first := handshake(t, serverCfg, clientCfg)
			require.NoError(t, first.serverErr)
			require.NoError(t, first.clientErr)
			require.False(t, first.client.DidResume)

			second := handshake(t, serverCfg, clientCfg)
			require.NoError(t, second.serverErr)
			require.NoError(t, second.clientErr)
			require.True(t, second.client.DidResume, "the second connection must resume the first session")
			assert.True(t, second.server.DidResume)

			// The client certificate is "revoked": a resumed session
			// must be refused as well.
			serverV.setRefuse(errRefused)
			third := handshake(t, serverCfg, clientCfg)
			assert.ErrorIs(t, third.serverErr, errRefused)
			assert.Error(t, third.clientErr)

			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, []bool{false, true, true}, serverResumed, "server hook calls")
			// On the refused connection the client hook runs in TLS 1.3,
			// where the server judges the client last, but not in a
			// TLS 1.2 abbreviated handshake, where the server refuses
			// before the client sees its Finished.
			require.GreaterOrEqual(t, len(clientResumed), 2)
			assert.Equal(t, []bool{false, true}, clientResumed[:2], "client hook calls")
			for i, req := range serverV.requests() {
				require.Len(t, req.Certificates, 1, "server call %d", i)
				assert.True(t, fx.client.Leaf.Equal(req.Certificates[0]), "server call %d sees the client certificate", i)
			}
			for i, req := range clientV.requests() {
				require.NotEmpty(t, req.Certificates, "client call %d", i)
				assert.True(t, fx.server.Leaf.Equal(req.Certificates[0]), "client call %d sees the server certificate", i)
				assert.Equal(t, "server.test", req.ServerName, "client call %d", i)
			}
		})
	}
}
