package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/internal/pemx"
	"github.com/kvmpki/kvmpki/provider"
)

// The end-to-end test of issue 14: examples/mgmtserver and this agent as
// separate processes, on a PostgreSQL database.
//
// Timings: the servers issue 3-minute certificates with a 150 s alert
// window and wake every minute, so the background task renews each agent
// 30 to 110 s after its provisioning; the whole test takes about two
// minutes.
const (
	e2eValidity    = "3m"
	e2eAlertPeriod = "150s"
	e2eInterval    = "1m"
)

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("the end-to-end test runs for about two minutes; skipped with -short")
	}
	dbURL := peers.PostgresDatabase(t)
	start := time.Now()
	bins := buildE2E(t)
	t.Logf("built mgmtserver and agent in %v", time.Since(start))

	// The database password, if the URL holds one, goes in PGPASSWORD:
	// never on a command line.
	env := []string{"KVMPKI_CA_PASSWORD=" + randomText(t)}
	dbURL, env = passwordToEnv(t, dbURL, env)
	work := t.TempDir()

	// 1. Management server A.
	a := startMgmt(t, bins, "mgmt-a", dbURL, env)

	// 2. An administrator's certificate, and three bootstrap credentials.
	admin := filepath.Join(work, "admin")
	cmd := exec.Command(bins.mgmt, "admin-cert", "-db", dbURL, "-out", admin)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "admin-cert: %s", out)
	apiA := newAPIClient(t, a.api, admin)

	// 3. Three agents, separate processes with directories of their own.
	agents := make([]*agentProc, 3)
	for i := range agents {
		agents[i] = startE2EAgent(t, bins, apiA, work, fmt.Sprintf("agent%d", i+1), a.agent)
	}
	for _, ag := range agents {
		ag.waitProvisioned(t)
	}
	hosts := apiA.listHosts(t, len(agents))
	for _, ag := range agents {
		assert.Equal(t, ag.serial, hosts[ag.name], "listHosts on A shows %s with its new serial", ag.name)
	}
	crl := fetchCRL(t, apiA)
	for _, ag := range agents {
		assert.True(t, crlHas(crl, ag.bootSerial), "%s's bootstrap certificate %s is revoked", ag.name, ag.bootSerial)
	}

	// 4. Revoke agent 3's certificate through the API.
	a3 := agents[2]
	marks := []int{len(agents[0].events.all()), len(agents[1].events.all()), len(a3.events.all())}
	t0 := time.Now()
	apiA.call(t, "revokeCertificate", map[string]any{"serial": a3.serial}, nil)
	apiDone := time.Since(t0)
	refused, _ := a3.events.waitFor(t, marks[2], 5*time.Second, "agent3 refused after its revocation", is(evRefused))
	assert.Equal(t, a3.serial, refused.Serial)
	assert.Contains(t, refused.Error, "remote error: tls:")
	toRefusal := refused.Time.Sub(t0)
	t.Logf("revocation to refusal: %v (revokeCertificate answered after %v; the test read the event after %v)",
		toRefusal, apiDone, refused.Seen.Sub(t0))
	assert.Less(t, toRefusal, time.Second, "agent3's next handshake is refused within a second of its revocation")
	time.Sleep(time.Second) // agents 1 and 2 stay connected meanwhile
	for i, ag := range agents[:2] {
		for _, ev := range ag.events.all()[marks[i]:] {
			assert.NotContains(t, []string{evDisconnected, evRefused}, ev.Event, "%s after agent3's revocation: %+v", ag.name, ev)
		}
	}
	var after map[string]string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if after = apiA.listHosts(t, 0); after[a3.name] == "" {
			break
		}
	}
	assert.NotContains(t, after, a3.name, "agent3 is no longer connected to A")
	for _, ag := range agents[:2] {
		assert.Equal(t, ag.serial, after[ag.name], "%s is still connected to A with its certificate", ag.name)
	}
	assert.Equal(t, ocsp.Revoked, ocspStatus(t, apiA, a3.cert, apiA.caCert), "A's OCSP reports agent3 revoked")
	assert.Equal(t, ocsp.Good, ocspStatus(t, apiA, agents[0].cert, apiA.caCert), "A's OCSP reports agent1 good")
	assert.True(t, crlHas(fetchCRL(t, apiA), a3.serial), "A's CRL lists agent3")

	// 6 (while the background task's renewals come due). Management server
	// B on the same database serves the same CA, and enrols an agent.
	b := startMgmt(t, bins, "mgmt-b", dbURL, env)
	apiB := newAPIClient(t, b.api, admin)
	assert.Equal(t, apiA.caBundle(t), apiB.caBundle(t), "listCaCertificate is the same on A and B")
	assert.Equal(t, ocsp.Revoked, ocspStatus(t, apiB, a3.cert, apiB.caCert), "B's OCSP reports agent3 revoked")
	a4 := startE2EAgent(t, bins, apiB, work, "agent4", b.agent)
	a4.waitProvisioned(t)
	assert.Equal(t, b.agent, a4.connected.Server, "agent4 is connected through B")
	assert.Equal(t, a4.serial, apiB.listHosts(t, 1)["agent4"], "listHosts on B shows agent4")

	// 5. The background task renews agents 1 and 2 over their
	// connections; each reconnects with the new serial, same process.
	for _, ag := range agents[:2] {
		reloaded, i := ag.events.waitFor(t, ag.connectedAt, 170*time.Second, ag.name+" reloaded by the background task", is(evReloaded))
		again, _ := ag.events.waitFor(t, i, 10*time.Second, ag.name+" reconnected after renewal", is(evConnected))
		assert.NotEqual(t, ag.serial, again.Serial, "%s has a new certificate", ag.name)
		assert.Equal(t, reloaded.Serial, again.Serial)
		assert.False(t, again.Bootstrap)
		assert.True(t, ag.running(), "%s's process is still running: it was never restarted", ag.name)
		superseded := false
		for deadline := time.Now().Add(5 * time.Second); !superseded && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			superseded = crlHas(fetchCRL(t, apiA), ag.serial)
		}
		assert.True(t, superseded, "%s's replaced certificate %s is revoked", ag.name, ag.serial)
		for _, ev := range ag.events.all()[ag.connectedAt:i] {
			assert.NotContains(t, []string{evDisconnected, evRefused}, ev.Event, "%s before its renewal: %+v", ag.name, ev)
		}
		t.Logf("%s renewed %v after its provisioning: serial %s -> %s; reload answered to connected again: %v (pid %d throughout)",
			ag.name, reloaded.Time.Sub(ag.connected.Time), ag.serial, again.Serial, again.Time.Sub(reloaded.Time), ag.pid)
	}
	// SIGTERM ends an agent cleanly.
	require.NoError(t, agents[0].cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-agents[0].exited:
		assert.Equal(t, 0, agents[0].cmd.ProcessState.ExitCode(), "agent1 exits with status 0 on SIGTERM")
	case <-time.After(10 * time.Second):
		assert.Fail(t, "agent1 did not exit on SIGTERM")
	}
	t.Logf("end-to-end test ran for %v after the build", time.Since(start))
}

// e2eBins are the binaries under test.
type e2eBins struct{ mgmt, agent string }

// buildE2E builds examples/mgmtserver and this agent, at once.
func buildE2E(t *testing.T) e2eBins {
	t.Helper()
	dir := t.TempDir()
	bins := e2eBins{mgmt: filepath.Join(dir, "mgmtserver"), agent: filepath.Join(dir, "agent")}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, b := range []struct{ out, pkg string }{{bins.mgmt, "../mgmtserver"}, {bins.agent, "."}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build %s: %w: %s", b.pkg, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	return bins
}

func randomText(t *testing.T) string {
	b := make([]byte, 16)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// passwordToEnv moves a password out of a postgres:// URL into
// PGPASSWORD.
func passwordToEnv(t *testing.T, dbURL string, env []string) (string, []string) {
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	if pw, ok := u.User.Password(); ok {
		env = append(env, "PGPASSWORD="+pw)
		u.User = url.User(u.User.Username())
	}
	return u.String(), env
}

// proc is a process of the test, stopped at the end of it; its standard
// error is printed when the test failed.
type proc struct {
	name   string
	cmd    *exec.Cmd
	pid    int
	stderr *peers.Buffer
	exited chan struct{}
}

// startProc starts bin with its standard output going to stdout.
func startProc(t *testing.T, name string, stdout io.Writer, env []string, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, stderr: &peers.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = stdout, p.stderr
	require.NoError(t, cmd.Start())
	p.pid = cmd.Process.Pid
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			const max = 16 << 10
			s := p.stderr.String()
			if len(s) > max {
				s = "...\n" + s[len(s)-max:]
			}
			t.Logf("%s (pid %d) standard error:\n%s", p.name, p.pid, s)
		}
	})
	return p
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return syscall.Kill(p.pid, 0) == nil
	}
}

// mgmtProc is a running management server and its addresses.
type mgmtProc struct {
	*proc
	api, agent string
}

func startMgmt(t *testing.T, bins e2eBins, name, dbURL string, env []string) *mgmtProc {
	t.Helper()
	r, w := io.Pipe()
	t.Cleanup(func() { r.Close() })
	p := startProc(t, name, w, env, bins.mgmt, "-db", dbURL, "-api-listen", "127.0.0.1:0", "-agent-listen", "127.0.0.1:0",
		"-names", "localhost", "-ips", "127.0.0.1",
		"-validity", e2eValidity, "-alert-period", e2eAlertPeriod, "-background-interval", e2eInterval)
	go func() { <-p.exited; w.Close() }()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	select {
	case line, ok := <-lines:
		require.True(t, ok, "%s exited before listening: %s", name, p.stderr.String())
		var l struct{ Event, API, Agent string }
		require.NoError(t, json.Unmarshal([]byte(line), &l), "%s printed %q", name, line)
		require.Equal(t, "listening", l.Event)
		t.Logf("%s (pid %d) listening: api %s, agent port %s", name, p.pid, l.API, l.Agent)
		return &mgmtProc{proc: p, api: l.API, agent: l.Agent}
	case <-time.After(60 * time.Second):
		require.FailNow(t, name+" did not start listening", "%s", p.stderr.String())
	}
	return nil
}

// apiClient calls a management server's API with the administrator's
// certificate, and its public endpoints without.
type apiClient struct {
	base   string
	admin  *http.Client
	anon   *http.Client
	caCert *x509.Certificate
}

func newAPIClient(t *testing.T, addr, adminPrefix string) *apiClient {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(adminPrefix+".crt", adminPrefix+".key")
	require.NoError(t, err)
	caPEM, err := os.ReadFile(adminPrefix + ".ca.crt")
	require.NoError(t, err)
	cas, err := pemx.ParseCertificates(caPEM)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	client := func(certs []tls.Certificate) *http.Client {
		return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12},
		}}
	}
	return &apiClient{base: "https://" + addr, admin: client([]tls.Certificate{cert}), anon: client(nil), caCert: cas[0]}
}

// call POSTs params to /command and decodes the answer into out; any
// status but 200 fails the test.
func (c *apiClient) call(t *testing.T, command string, params map[string]any, out any) {
	t.Helper()
	if params == nil {
		params = map[string]any{}
	}
	body, err := json.Marshal(params)
	require.NoError(t, err)
	resp, err := c.admin.Post(c.base+"/"+command, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", command, data)
	if out != nil {
		require.NoError(t, json.Unmarshal(data, out), "%s: %s", command, data)
	}
}

func (c *apiClient) caBundle(t *testing.T) string {
	var r struct {
		CACertificates string `json:"cacertificates"`
	}
	c.call(t, "listCaCertificate", nil, &r)
	require.NotEmpty(t, r.CACertificates)
	return r.CACertificates
}

// listHosts waits until at least n agents are listed and returns their
// serials by host id.
func (c *apiClient) listHosts(t *testing.T, n int) map[string]string {
	t.Helper()
	out := map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var r struct {
			Count int `json:"count"`
			Host  []struct {
				HostID string `json:"hostid"`
				Serial string `json:"serial"`
			} `json:"host"`
		}
		c.call(t, "listHosts", nil, &r)
		clear(out)
		for _, h := range r.Host {
			out[h.HostID] = h.Serial
		}
		if len(out) >= n || time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get fetches a public endpoint without a client certificate.
func (c *apiClient) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := c.anon.Get(c.base + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", path, data)
	return data
}

// fetchCRL fetches /crl, checks its signature, and returns it.
func fetchCRL(t *testing.T, c *apiClient) *x509.RevocationList {
	t.Helper()
	crl, err := x509.ParseRevocationList(c.get(t, "/crl"))
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(c.caCert))
	return crl
}

func crlHas(crl *x509.RevocationList, serial string) bool {
	want, err := provider.ParseSerial(serial)
	if err != nil {
		return false
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(want) == 0 {
			return true
		}
	}
	return false
}

// ocspStatus asks /ocsp about cert, without a client certificate, and
// checks the answer's signature.
func ocspStatus(t *testing.T, c *apiClient, cert, issuer *x509.Certificate) int {
	t.Helper()
	req, err := ocsp.CreateRequest(cert, issuer, nil)
	require.NoError(t, err)
	resp, err := c.anon.Post(c.base+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	r, err := ocsp.ParseResponseForCert(data, cert, issuer)
	require.NoError(t, err)
	assert.Equal(t, 0, r.SerialNumber.Cmp(cert.SerialNumber))
	return r.Status
}

// agentProc is a running agent and what the test learnt of it.
type agentProc struct {
	*proc
	name       string
	dir        string
	events     *eventLog
	started    time.Time
	bootSerial string

	// Set by waitProvisioned.
	serial      string            // its certificate after provisioning
	cert        *x509.Certificate // that certificate
	connected   seenEvent         // its first connection with it
	connectedAt int               // that event's index
}

// startE2EAgent gets a bootstrap credential for name through api's
// issueCertificate and starts an agent with it on servers.
func startE2EAgent(t *testing.T, bins e2eBins, api *apiClient, work, name, servers string) *agentProc {
	t.Helper()
	var issued struct {
		Certificate    string `json:"certificate"`
		CACertificates string `json:"cacertificates"`
		PrivateKey     string `json:"privatekey"`
		Serial         string `json:"serial"`
	}
	api.call(t, "issueCertificate", map[string]any{"domain": name, "ipaddress": "127.0.0.1"}, &issued)
	require.NotEmpty(t, issued.PrivateKey, "issueCertificate without a CSR returns the key")
	dir := filepath.Join(work, name)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	prefix := filepath.Join(dir, "bootstrap")
	credential{cert: []byte(issued.Certificate), key: []byte(issued.PrivateKey), bundle: []byte(issued.CACertificates)}.write(t, prefix)
	events := newEventLog(t)
	started := time.Now()
	p := startProc(t, name, events, nil, bins.agent, "-dir", dir, "-servers", servers, "-hostid", name, "-max-backoff", "2s")
	return &agentProc{proc: p, name: name, dir: dir, events: events, started: started, bootSerial: issued.Serial}
}

// waitProvisioned waits until the agent connected with its bootstrap
// certificate, was provisioned and connected again with its new one.
func (ag *agentProc) waitProvisioned(t *testing.T) {
	t.Helper()
	boot, i := ag.events.waitFor(t, 0, 30*time.Second, ag.name+" connected with its bootstrap certificate", is(evConnected))
	assert.True(t, boot.Bootstrap)
	assert.Equal(t, ag.bootSerial, boot.Serial)
	prov, i := ag.events.waitFor(t, i, 30*time.Second, ag.name+" provisioned", is(evProvisioned))
	ag.connected, ag.connectedAt = ag.events.waitFor(t, i, 30*time.Second, ag.name+" connected with its new certificate", is(evConnected))
	assert.False(t, ag.connected.Bootstrap)
	assert.Equal(t, prov.Serial, ag.connected.Serial)
	assert.NotEqual(t, ag.bootSerial, ag.connected.Serial)
	ag.serial = ag.connected.Serial
	for _, suffix := range []string{".crt", ".key", ".ca.crt"} {
		assert.NoFileExists(t, filepath.Join(ag.dir, "bootstrap"+suffix))
	}
	data, err := os.ReadFile(filepath.Join(ag.dir, "cloud.crt"))
	require.NoError(t, err)
	certs, err := pemx.ParseCertificates(data)
	require.NoError(t, err)
	ag.cert = certs[0]
	require.Equal(t, 0, ag.cert.SerialNumber.Cmp(mustSerial(t, ag.serial)))
	t.Logf("%s: started to connected with its own certificate %v (bootstrap handshake to that connection %v), serial %s",
		ag.name, ag.connected.Time.Sub(ag.started), ag.connected.Time.Sub(boot.Time), ag.serial)
}

func mustSerial(t *testing.T, s string) *big.Int {
	n, err := provider.ParseSerial(s)
	require.NoError(t, err)
	return n
}
