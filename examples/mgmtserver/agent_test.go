package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/keystore"
	"github.com/kvmpki/kvmpki/provider"
)

// bootstrapFromAPI issues a short-lived bootstrap certificate through
// issueCertificate without a CSR, as an administrator does for a new
// host.
func (e *env) bootstrapFromAPI(t *testing.T, admin *http.Client, host string) tls.Certificate {
	t.Helper()
	status, body := e.call(t, admin, "issueCertificate", url.Values{"domain": {host}, "ipaddress": {"192.0.2.7"}, "duration": {"1"}})
	require.Equal(t, http.StatusOK, status, body)
	cert, err := tls.X509KeyPair([]byte(body["certificate"].(string)), []byte(body["privatekey"].(string)))
	require.NoError(t, err)
	return cert
}

// status reads a serial's status from the CA's inventory.
func (e *env) status(t *testing.T, serial string) provider.CertificateStatus {
	t.Helper()
	n, err := ca.ParseSerial(serial)
	require.NoError(t, err)
	rec, err := provider.LookupCertificate(context.Background(), e.root, n)
	require.NoError(t, err)
	return rec.Status
}

// TestAgentBootstrapProvision: an agent connecting with a bootstrap
// certificate from issueCertificate and asking to be provisioned gets a
// certificate for its own key over its connection, with the bootstrap
// certificate's names; the bootstrap serial is revoked (superseded), a
// new connection with it is refused, and the agent's reconnection with
// its new certificate is admitted and listed.
func TestAgentBootstrapProvision(t *testing.T) {
	e := newEnv(t)
	adminCert := e.admin(t)
	admin := e.client(&adminCert)
	boot := e.bootstrapFromAPI(t, admin, "kvm1")
	bootSerial := provider.FormatSerial(boot.Leaf.SerialNumber)

	a := e.startAgent(t, "kvm1", boot)
	newSerial := e.waitHost(t, admin, "kvm1", bootSerial)

	assert.Equal(t, provider.StatusRevoked, e.status(t, bootSerial), "the bootstrap certificate is single-use")
	creds, err := keystore.CheckSecured(context.Background(), a.dir, nil)
	require.NoError(t, err)
	got := creds.Chain[0]
	assert.Equal(t, newSerial, provider.FormatSerial(got.SerialNumber))
	assert.Equal(t, []string{"kvm1"}, got.DNSNames, "the names of the bootstrap certificate")
	require.Len(t, got.IPAddresses, 1)
	assert.Equal(t, "192.0.2.7", got.IPAddresses[0].String())
	assert.Equal(t, provider.RoleHost, provider.RoleOf(got))

	// The bootstrap certificate opens nothing any more.
	assert.ErrorContains(t, e.handshakeErr(t, boot), "bad certificate")
	assert.Contains(t, e.log.String(), "serial "+bootSerial+" revoked", "refused as revoked")

	for _, want := range []string{`"msg":"provisioning agent"`, `"msg":"agent provisioned"`, `"msg":"revoked the replaced certificate"`} {
		assert.Contains(t, e.log.String(), want)
	}
	assert.NotContains(t, e.log.String(), "PRIVATE KEY", "keys are never logged")
}

// TestProvisionCertificateCommand: provisionCertificate re-provisions a
// connected agent over its connection, answers the new serial, revokes
// the previous certificate, and the agent comes back with the new one.
func TestProvisionCertificateCommand(t *testing.T) {
	e := newEnv(t)
	adminCert := e.admin(t)
	admin := e.client(&adminCert)
	boot := e.bootstrapFromAPI(t, admin, "kvm2")
	e.startAgent(t, "kvm2", boot)
	first := e.waitHost(t, admin, "kvm2", provider.FormatSerial(boot.Leaf.SerialNumber))

	status, body := e.post(t, admin, "provisionCertificate", `{"hostid":"kvm2"}`)
	require.Equal(t, http.StatusOK, status, body)
	second, _ := body["serial"].(string)
	require.NotEmpty(t, second)
	assert.NotEqual(t, first, second)
	assert.Equal(t, "kvm2", body["hostid"])
	assert.Equal(t, second, e.waitHost(t, admin, "kvm2", first))
	assert.Equal(t, provider.StatusRevoked, e.status(t, first))
	assert.Equal(t, provider.StatusValid, e.status(t, second))

	// The host list shows it, with its address and time.
	status, body = e.call(t, admin, "listHosts", nil)
	require.Equal(t, http.StatusOK, status, body)
	raw, err := json.Marshal(body["host"])
	require.NoError(t, err)
	var hosts []host
	require.NoError(t, json.Unmarshal(raw, &hosts))
	require.Len(t, hosts, 1)
	assert.Equal(t, "kvm2", hosts[0].HostID)
	assert.True(t, strings.HasPrefix(hosts[0].RemoteAddress, "127.0.0.1:"))
	assert.WithinDuration(t, time.Now(), hosts[0].Since, time.Minute)
}

// TestHostFor: the background task renews a certificate through the
// agent connected with it, with that certificate's names; a certificate
// no agent here presents is left to alerts (nil, nil).
func TestHostFor(t *testing.T) {
	e := newEnv(t)
	adminCert := e.admin(t)
	admin := e.client(&adminCert)
	boot := e.bootstrapFromAPI(t, admin, "kvm3")
	e.startAgent(t, "kvm3", boot)
	serial := e.waitHost(t, admin, "kvm3", provider.FormatSerial(boot.Leaf.SerialNumber))
	n, err := ca.ParseSerial(serial)
	require.NoError(t, err)
	rec, err := provider.LookupCertificate(context.Background(), e.root, n)
	require.NoError(t, err)

	req, err := e.agents.hostFor(context.Background(), rec)
	require.NoError(t, err)
	require.NotNil(t, req)
	assert.Equal(t, "kvm3", req.Name)
	assert.Equal(t, []string{"kvm3"}, req.DNSNames)

	// A host this server is provisioning already is not provisioned
	// twice at once over one connection: the API answers 409 (and the
	// background task retries quietly, as package ca tests).
	held := &heldHost{entered: make(chan struct{}), release: make(chan struct{})}
	heldDone := make(chan error, 1)
	go func() {
		_, err := e.m.Provision(context.Background(), &ca.ProvisionRequest{Name: "kvm3", Host: held})
		heldDone <- err
	}()
	<-held.entered
	status, body := e.call(t, admin, "provisionCertificate", url.Values{"hostid": {"kvm3"}})
	assert.Equal(t, http.StatusConflict, status, body)
	close(held.release)
	require.Error(t, <-heldDone)

	// Renewing through it works end to end: the agent reconnects with
	// the renewed certificate.
	res, err := e.m.Provision(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, provider.FormatSerial(res.Certificate.SerialNumber), e.waitHost(t, admin, "kvm3", serial))

	other := e.issue(t, provider.RoleHost, "kvm4", "kvm4")
	req, err = e.agents.hostFor(context.Background(), &provider.CertificateRecord{Serial: other.Leaf.SerialNumber})
	assert.NoError(t, err)
	assert.Nil(t, req)
}

// TestSecondConnectionReplacesFirst: a second connection of the same
// host id closes the first; the listed serial is the newer connection's.
func TestSecondConnectionReplacesFirst(t *testing.T) {
	e := newEnv(t)
	adminCert := e.admin(t)
	admin := e.client(&adminCert)
	c1 := e.issue(t, provider.RoleHost, "kvm5", "kvm5")
	c2 := e.issue(t, provider.RoleHost, "kvm5", "kvm5")

	done1 := e.serveAgent(t, c1, "kvm5")
	s1 := e.waitHost(t, admin, "kvm5")
	assert.Equal(t, provider.FormatSerial(c1.Leaf.SerialNumber), s1)
	e.serveAgent(t, c2, "kvm5")
	assert.Equal(t, provider.FormatSerial(c2.Leaf.SerialNumber), e.waitHost(t, admin, "kvm5", s1))
	select {
	case err := <-done1:
		assert.Error(t, err, "the first connection was closed by the server")
	case <-time.After(10 * time.Second):
		t.Fatal("the first connection stayed open")
	}
	assert.Len(t, e.agents.list(), 1)
}

// TestBackgroundRenewsConnectedAgent runs the server's background task
// (backgroundOptions, as the server wires it) with short certificates:
// the agent's certificate is renewed over its connection in the first
// half of its alert window, the agent reconnects with the new serial
// without restarting, and the replaced certificate is revoked.
func TestBackgroundRenewsConnectedAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a renewal window (20 to 50 s)")
	}
	e := newEnvSettings(t, &ca.Settings{Validity: 80 * time.Second, ExpiryAlertPeriod: time.Minute, BackgroundInterval: time.Minute})
	adminCert := e.admin(t)
	admin := e.client(&adminCert)
	boot := e.issue(t, provider.RoleHost, "kvm6", "kvm6")
	e.startAgent(t, "kvm6", boot)
	first := e.waitHost(t, admin, "kvm6", provider.FormatSerial(boot.Leaf.SerialNumber))
	n, err := ca.ParseSerial(first)
	require.NoError(t, err)
	rec, err := provider.LookupCertificate(context.Background(), e.root, n)
	require.NoError(t, err)
	// The task renews at a moment in the first half of the alert window,
	// its starts spaced when several certificates (the server's own
	// included) are due in one minute: in any case before the end.
	latest := rec.NotAfter.Add(-5 * time.Second)

	bg, err := e.m.NewBackground(backgroundOptions(e.agents, e.id, slog.New(slog.NewJSONHandler(e.log, nil))))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	e.waitTimeout = 80 * time.Second
	second := e.waitHost(t, admin, "kvm6", first)
	t.Logf("renewed %v before the agent's certificate ended", time.Until(rec.NotAfter).Round(100*time.Millisecond))
	assert.True(t, time.Now().Before(latest), "renewed before the 80 s certificate ended")
	assert.Eventually(t, func() bool { return e.status(t, first) == provider.StatusRevoked }, 10*time.Second, 50*time.Millisecond,
		"the replaced certificate is revoked as superseded")
	assert.Equal(t, provider.StatusValid, e.status(t, second))
}

// TestRevokeCutsConnectedAgent: revokeCertificate through the API closes
// that agent's live connection at once (package ca cuts it), its next
// handshake is refused, and another agent stays connected.
func TestRevokeCutsConnectedAgent(t *testing.T) {
	e := newEnv(t)
	adminCert := e.admin(t)
	admin := e.client(&adminCert)
	victim := e.issue(t, provider.RoleHost, "kvm7", "kvm7")
	bystander := e.issue(t, provider.RoleHost, "kvm8", "kvm8")
	victimDone := e.serveAgent(t, victim, "kvm7")
	bystanderDone := e.serveAgent(t, bystander, "kvm8")
	e.waitHost(t, admin, "kvm7")
	e.waitHost(t, admin, "kvm8")

	start := time.Now()
	status, body := e.call(t, admin, "revokeCertificate", url.Values{"serial": {provider.FormatSerial(victim.Leaf.SerialNumber)}})
	require.Equal(t, http.StatusOK, status, body)
	select {
	case err := <-victimDone:
		took := time.Since(start)
		t.Logf("revoked agent's connection closed %v after the API call began", took.Round(time.Millisecond))
		assert.Error(t, err)
		assert.Less(t, took, time.Second)
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked agent stayed connected")
	}
	assert.ErrorContains(t, e.handshakeErr(t, victim), "bad certificate", "its next handshake is refused")
	select {
	case err := <-bystanderDone:
		t.Fatalf("the other agent was disconnected: %v", err)
	default:
	}
	assert.Eventually(t, func() bool {
		hosts := e.agents.list()
		return len(hosts) == 1 && hosts[0].hostID == "kvm8"
	}, 5*time.Second, 20*time.Millisecond, "only the other agent is listed")
}

// TestProvisionFailureClosesConnection: when the agent fails its setup,
// the server closes the connection (the agent reconnects and asks
// again), and the certificate it connected with stays valid.
func TestProvisionFailureClosesConnection(t *testing.T) {
	e := newEnv(t)
	boot := e.issue(t, provider.RoleHost, "kvm9", "kvm9")
	conn, err := tls.Dial("tcp", e.agentAddr, &tls.Config{RootCAs: e.pool, ServerName: serverName, Certificates: []tls.Certificate{boot}})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	done := make(chan error, 1)
	go func() {
		done <- ca.ServeAgent(context.Background(), conn, ca.AgentHello{HostID: "kvm9", Provision: true},
			func(context.Context, ca.AgentCommand) (ca.AgentAnswer, error) { return nil, errors.New("disk full") })
	}()
	select {
	case err := <-done:
		assert.Error(t, err, "the server closed the connection")
	case <-time.After(10 * time.Second):
		t.Fatal("the connection stayed open after the failed provisioning")
	}
	assert.Equal(t, provider.StatusValid, e.status(t, provider.FormatSerial(boot.Leaf.SerialNumber)))
	assert.Contains(t, e.log.String(), "disk full")
}

// heldHost holds its keystore setup until released, then fails it.
type heldHost struct {
	entered, release chan struct{}
}

func (h *heldHost) SetupKeystore(context.Context, *ca.KeystoreSetup) ([]byte, error) {
	close(h.entered)
	<-h.release
	return nil, errors.New("released")
}

func (h *heldHost) InstallCertificate(context.Context, *ca.CertificateInstall) error { return nil }
func (h *heldHost) Reload(context.Context) error                                     { return nil }

// flakyListener fails its first fail Accepts, as accept(2) does when the
// process runs out of file descriptors.
type flakyListener struct {
	net.Listener
	mu   sync.Mutex
	fail int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fail > 0 {
		l.fail--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// TestAgentPortSurvivesAcceptError: a failed accept (too many open
// files) does not end the agent port: it tries again, and the next agent
// is served.
func TestAgentPortSurvivesAcceptError(t *testing.T) {
	e := newEnv(t)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err := e.m.NewAgentListener(&flakyListener{Listener: inner, fail: 3}, &ca.AgentServerConfig{Identity: e.id})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { e.agents.serve(t.Context(), ln); close(done) }()
	defer func() { ln.Close(); <-done }()

	cert := e.issue(t, provider.RoleHost, "kvm7", "kvm7")
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second},
		Config: &tls.Config{RootCAs: e.pool, ServerName: serverName, Certificates: []tls.Certificate{cert}}}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", inner.Addr().String())
	require.NoError(t, err, "the agent port answers after failed accepts")
	conn.Close()
}
