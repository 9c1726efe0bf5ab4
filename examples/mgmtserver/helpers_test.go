package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/keystore"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// env is a management server running in the test's process: the real
// API handler on a TLS listener and the real agent port, over a rootca
// CA in a memory store.
type env struct {
	m         *ca.Manager
	root      *rootca.CA
	id        *ca.Identity
	agents    *agents
	api       *api
	apiURL    string
	agentAddr string
	pool      *x509.CertPool
	bundle    []byte
	log       *peers.Buffer
	// waitTimeout bounds waitHost; zero means 20 s.
	waitTimeout time.Duration
}

const serverName = "mgmt.test"

func newEnv(t *testing.T) *env { return newEnvSettings(t, nil) }

// newEnvSettings runs a server with settings s (nil for the defaults);
// the background task does not run (a test starts its own).
func newEnvSettings(t *testing.T, s *ca.Settings) *env {
	t.Helper()
	ctx := context.Background()
	logBuf := &peers.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logBuf, nil))
	if s == nil {
		s = &ca.Settings{}
	}
	s.Logger = logger
	store := rootca.NewMemStore()
	opts := &rootca.Options{Password: func() ([]byte, error) { return []byte("test password 123"), nil }, Logger: logger}
	root, err := openCA(ctx, store, opts, logger)
	require.NoError(t, err)
	reg, err := registry(store, opts, root)
	require.NoError(t, err)
	m, err := ca.New(ctx, reg, s)
	require.NoError(t, err)
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	agentLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv, err := startServer(ctx, &serverConfig{
		Manager: m, Provider: root, Hostname: serverName, Addresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		APIListener: apiLn, AgentListener: agentLn, Logger: logger,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, srv.shutdown(5*time.Second))
		m.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logBuf.String())
		}
	})

	bundle, err := m.CABundle(ctx)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(bundle))
	return &env{
		m: m, root: root, id: srv.id, agents: srv.agents, api: srv.api,
		apiURL: "https://" + apiLn.Addr().String(), agentAddr: agentLn.Addr().String(),
		pool: pool, bundle: bundle, log: logBuf,
	}
}

// issue issues a certificate straight from the CA (no API), with a
// generated key.
func (e *env) issue(t *testing.T, role provider.Role, cn string, names ...string) tls.Certificate {
	t.Helper()
	res, err := e.root.Issue(context.Background(), &provider.IssueRequest{Role: role, CommonName: cn, DNSNames: names})
	require.NoError(t, err)
	c, err := res.TLSCertificate()
	require.NoError(t, err)
	return c
}

// admin is an administrator's certificate, as admin-cert makes one.
func (e *env) admin(t *testing.T) tls.Certificate {
	t.Helper()
	return e.issue(t, provider.RoleClient, "admin", adminMarker)
}

// client returns an HTTPS client presenting cert (none when nil) and
// trusting the CA, without connection reuse.
func (e *env) client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: e.pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

// call runs a command with GET query parameters and returns the status
// and the decoded JSON object.
func (e *env) call(t *testing.T, c *http.Client, command string, q url.Values) (int, map[string]any) {
	t.Helper()
	u := e.apiURL + "/" + command
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := c.Get(u)
	require.NoError(t, err)
	return decodeResponse(t, resp)
}

// post runs a command with a JSON body.
func (e *env) post(t *testing.T, c *http.Client, command, body string) (int, map[string]any) {
	t.Helper()
	resp, err := c.Post(e.apiURL+"/"+command, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	return decodeResponse(t, resp)
}

func decodeResponse(t *testing.T, resp *http.Response) (int, map[string]any) {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "body %s", b)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out), "body %q", b)
	return resp.StatusCode, out
}

// keystoreHandler answers the server's provisioning commands with package
// keystore on dir, as an agent does.
func keystoreHandler(dir, cn string) ca.AgentHandler {
	return func(ctx context.Context, cmd ca.AgentCommand) (ca.AgentAnswer, error) {
		switch c := cmd.(type) {
		case *ca.SetupKeystoreCommand:
			res, err := keystore.Setup(ctx, dir, &keystore.SetupOptions{
				CommonName: cn, DNSNames: c.Setup.DNSNames, IPAddresses: c.Setup.IPAddresses,
			})
			if err != nil {
				return nil, err
			}
			return &ca.SetupKeystoreAnswer{CSRPEM: res.CSR}, nil
		case *ca.SetupCertificateCommand:
			if _, err := keystore.Import(ctx, dir, c.Install.CertificatePEM, c.Install.CABundlePEM, nil); err != nil {
				return nil, err
			}
			return &ca.SetupCertificateAnswer{}, nil
		case *ca.ReloadCommand:
			return &ca.ReloadAnswer{}, nil
		}
		return nil, errors.New("unknown command")
	}
}

// testAgent is an agent run by the test: it connects with a bootstrap
// certificate until its keystore holds credentials, asks to be
// provisioned then, and reconnects whenever ServeAgent returns (after a
// reload).
type testAgent struct {
	e         *env
	dir, cn   string
	bootstrap tls.Certificate

	mu       sync.Mutex
	serials  []string // the serials it connected with, in order
	lastErr  error
	connects chan string
}

func (e *env) startAgent(t *testing.T, cn string, bootstrap tls.Certificate) *testAgent {
	t.Helper()
	a := &testAgent{e: e, dir: t.TempDir(), cn: cn, bootstrap: bootstrap, connects: make(chan string, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.loop(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

func (a *testAgent) loop(ctx context.Context) {
	for ctx.Err() == nil {
		err := a.once(ctx)
		a.mu.Lock()
		a.lastErr = err
		a.mu.Unlock()
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// once connects and serves one connection.
func (a *testAgent) once(ctx context.Context) error {
	var cfg *tls.Config
	provision := false
	creds, err := ca.LoadAgentCredentials(ca.AgentCredentialFiles{
		CertFile: a.dir + "/" + keystore.CertFile, KeyFile: a.dir + "/" + keystore.KeyFile, CAFile: a.dir + "/" + keystore.CACertFile,
	})
	if err == nil {
		if cfg, err = creds.TLSConfig(serverName); err != nil {
			return err
		}
	} else {
		provision = true
		cfg = &tls.Config{RootCAs: a.e.pool, ServerName: serverName, Certificates: []tls.Certificate{a.bootstrap}, MinVersion: tls.VersionTLS12}
	}
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", a.e.agentAddr)
	if err != nil {
		return err
	}
	conn := c.(*tls.Conn)
	// The server judges the client certificate after a TLS 1.3 client's
	// handshake has ended: a refusal shows at the first read.
	leaf := cfg.Certificates
	var serial string
	if len(leaf) > 0 && leaf[0].Leaf != nil {
		serial = provider.FormatSerial(leaf[0].Leaf.SerialNumber)
	} else if creds != nil {
		serial = provider.FormatSerial(creds.Certificate().SerialNumber)
	}
	a.mu.Lock()
	a.serials = append(a.serials, serial)
	a.mu.Unlock()
	select {
	case a.connects <- serial:
	default:
	}
	return ca.ServeAgent(ctx, conn, ca.AgentHello{HostID: a.cn, Provision: provision}, keystoreHandler(a.dir, a.cn))
}

// waitHost waits until listHosts shows host with a serial other than
// those in not, and returns it.
func (e *env) waitHost(t *testing.T, admin *http.Client, host string, not ...string) string {
	t.Helper()
	wait := e.waitTimeout
	if wait == 0 {
		wait = 20 * time.Second
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		status, body := e.call(t, admin, "listHosts", url.Values{"hostid": {host}})
		require.Equal(t, http.StatusOK, status, body)
		if hosts, _ := body["host"].([]any); len(hosts) == 1 {
			serial := hosts[0].(map[string]any)["serial"].(string)
			ok := true
			for _, n := range not {
				ok = ok && serial != n
			}
			if ok {
				return serial
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("host %s did not connect with a new certificate", host)
	return ""
}

// serveAgent connects an agent presenting c, serving keystore commands on
// a directory of its own, once (no reconnection); the channel receives
// ServeAgent's result when the connection ends.
func (e *env) serveAgent(t *testing.T, c tls.Certificate, id string) chan error {
	t.Helper()
	conn, err := tls.Dial("tcp", e.agentAddr, &tls.Config{RootCAs: e.pool, ServerName: serverName, Certificates: []tls.Certificate{c}})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	done := make(chan error, 1)
	dir := t.TempDir()
	go func() {
		done <- ca.ServeAgent(context.Background(), conn, ca.AgentHello{HostID: id}, keystoreHandler(dir, id))
	}()
	return done
}

// handshakeErr connects to the agent port presenting c and returns why
// the server refused it (nil if it did not within 5 s). A TLS 1.3 client
// learns of the refusal of its certificate at its first read.
func (e *env) handshakeErr(t *testing.T, c tls.Certificate) error {
	t.Helper()
	conn, err := tls.Dial("tcp", e.agentAddr, &tls.Config{RootCAs: e.pool, ServerName: serverName, Certificates: []tls.Certificate{c}})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}
