package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/keystore"
	"github.com/kvmpki/kvmpki/provider"
)

// newTestAgent returns an agent on a fresh directory whose events go to
// the returned log.
func newTestAgent(t *testing.T, servers string) (*agent, *eventLog) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "agent")
	log := newEventLog(t)
	return &agent{
		dir:       dir,
		props:     filepath.Join(dir, keystore.PropertiesFile),
		servers:   servers,
		bootstrap: filepath.Join(t.TempDir(), "bootstrap"),
		hostID:    "kvm1",
		log:       slog.New(slog.NewTextHandler(tWriter{t}, nil)),
		events:    &events{w: log},
	}, log
}

// tWriter sends the agent's logs to the test's log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// provision runs the three commands the server sends through a.handle,
// issuing the certificate with m, and returns its serial.
func provision(t *testing.T, a *agent, m *ca.Manager) *x509.Certificate {
	t.Helper()
	ctx := t.Context()
	ip := net.ParseIP("127.0.0.1")
	ans, err := a.handle(ctx, &ca.SetupKeystoreCommand{Setup: ca.KeystoreSetup{DNSNames: []string{"kvm1.example.org"}, IPAddresses: []net.IP{ip}}})
	require.NoError(t, err)
	csrPEM := ans.(*ca.SetupKeystoreAnswer).CSRPEM
	block, _ := pem.Decode(csrPEM)
	require.NotNil(t, block)
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	require.NoError(t, err)
	assert.Equal(t, "kvm1", csr.Subject.CommonName, "the CSR names the host id")
	assert.Equal(t, []string{"kvm1.example.org"}, csr.DNSNames)

	res, err := m.Issue(ctx, &ca.IssueRequest{CSR: csrPEM, DNSNames: []string{"kvm1.example.org"}, IPAddresses: []net.IP{ip}})
	require.NoError(t, err)
	bundle, err := m.CABundle(ctx)
	require.NoError(t, err)
	_, err = a.handle(ctx, &ca.SetupCertificateCommand{Install: ca.CertificateInstall{
		CertificatePEM: provider.EncodeCertificates(res.Certificate), CABundlePEM: bundle,
	}})
	require.NoError(t, err)
	_, err = a.handle(ctx, &ca.ReloadCommand{})
	require.NoError(t, err)
	return res.Certificate
}

// TestHandlerProvisions answers the three commands against a real
// keystore directory: the CSR names the host, the issued certificate is
// installed and secured, and the events say so with its serial.
func TestHandlerProvisions(t *testing.T) {
	m := newManager(t, ca.Settings{}, 0)
	a, log := newTestAgent(t, "")
	cert := provision(t, a, m)

	creds, err := keystore.CheckSecured(t.Context(), a.dir, &keystore.CheckSecuredOptions{PropertiesFile: a.props})
	require.NoError(t, err)
	assert.Equal(t, cert.Raw, creds.Chain[0].Raw)
	serial := provider.FormatSerial(cert.SerialNumber)
	var got []string
	for _, ev := range log.all() {
		got = append(got, ev.Event+":"+ev.Command+ev.Serial)
	}
	assert.Equal(t, []string{
		"command:SetupKeystoreCommand", "command:SetupCertificateCommand", "provisioned:" + serial,
		"command:ReloadCommand", "reloaded:" + serial,
	}, got)
	fi, err := os.Stat(filepath.Join(a.dir, keystore.KeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

// TestHandlerRefusesBadCertificate: a certificate for another key, or
// from another CA, is refused with an error naming the import, and the
// agent's files stay byte for byte as they were.
func TestHandlerRefusesBadCertificate(t *testing.T) {
	m := newManager(t, ca.Settings{}, 0)
	other := newManager(t, ca.Settings{}, 0)
	a, log := newTestAgent(t, "")
	provision(t, a, m)
	before := peers.ReadFiles(t, a.dir)
	bundle, err := m.CABundle(t.Context())
	require.NoError(t, err)

	// Another key's certificate, from the right CA.
	otherKey := issueBootstrap(t, m, "kvm2.example.org", 0)
	// The right key's CSR, signed by another CA.
	csr, err := os.ReadFile(filepath.Join(a.dir, keystore.CSRFile))
	require.NoError(t, err)
	foreign, err := other.Issue(t.Context(), &ca.IssueRequest{CSR: csr, DNSNames: []string{"kvm1.example.org"}})
	require.NoError(t, err)

	tests := []struct {
		name   string
		cert   []byte
		bundle []byte
		want   error
	}{
		{name: "another key", cert: otherKey.cert, bundle: bundle, want: keystore.ErrKeyMismatch},
		{name: "another CA", cert: provider.EncodeCertificates(foreign.Certificate), bundle: bundle, want: keystore.ErrUnknownAuthority},
		{name: "no certificate", cert: []byte("not PEM"), bundle: bundle, want: keystore.ErrNoCertificateBlock},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := len(log.all())
			_, err := a.handle(t.Context(), &ca.SetupCertificateCommand{Install: ca.CertificateInstall{CertificatePEM: tc.cert, CABundlePEM: tc.bundle}})
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), "agent: certificate import: ")
			assert.Equal(t, before, peers.ReadFiles(t, a.dir))
			for _, ev := range log.all()[n:] {
				assert.NotEqual(t, evProvisioned, ev.Event)
			}
		})
	}
}

// TestReloadRefusesUnsecured: a ReloadCommand on a directory that holds
// no usable credentials fails (the server learns it) and keeps the
// bootstrap credential.
func TestReloadRefusesUnsecured(t *testing.T) {
	m := newManager(t, ca.Settings{}, 0)
	a, _ := newTestAgent(t, "")
	boot := issueBootstrap(t, m, "kvm1", time.Hour)
	boot.write(t, a.bootstrap)
	creds, bootstrap, err := a.chooseCredentials(t.Context())
	require.NoError(t, err)
	require.True(t, bootstrap)
	a.use(creds, bootstrap)

	_, err = a.handle(t.Context(), &ca.ReloadCommand{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "agent: reload: the installed credentials are not usable")
	_, _, onBootstrap := a.current()
	assert.True(t, onBootstrap)
	assert.FileExists(t, a.bootstrap+".key")
}

// TestReloadServices: -reload-libvirt's hook runs on a reload; its
// failure fails the command and is in the reloaded event.
func TestReloadServices(t *testing.T) {
	m := newManager(t, ca.Settings{}, 0)
	a, log := newTestAgent(t, "")
	calls := 0
	a.reloadServices = func(context.Context) error { calls++; return nil }
	provision(t, a, m)
	assert.Equal(t, 1, calls)

	a.reloadServices = func(context.Context) error { return errors.New("virt-admin: connection refused") }
	_, err := a.handle(t.Context(), &ca.ReloadCommand{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "virt-admin: connection refused")
	evs := log.all()
	assert.Equal(t, evReloaded, evs[len(evs)-1].Event)
	assert.Contains(t, evs[len(evs)-1].Error, "connection refused")
}

// TestChooseCredentials: secured credentials win; without them the
// bootstrap credential is used; with neither, or with an unusable
// bootstrap credential, the error says what is missing and matches
// errNoCredentials.
func TestChooseCredentials(t *testing.T) {
	m := newManager(t, ca.Settings{}, 0)
	past := newManager(t, ca.Settings{Validity: time.Hour, ExpiryAlertPeriod: 10 * time.Minute, BackgroundInterval: time.Minute}, -3*time.Hour)
	tests := []struct {
		name          string
		setup         func(t *testing.T, a *agent)
		wantBootstrap bool
		wantErr       []string
	}{
		{
			name:  "secured directory",
			setup: func(t *testing.T, a *agent) { provision(t, a, m) },
		},
		{
			name: "secured directory and a stale bootstrap",
			setup: func(t *testing.T, a *agent) {
				provision(t, a, m)
				issueBootstrap(t, m, "kvm1", time.Hour).write(t, a.bootstrap)
			},
		},
		{
			name:          "bootstrap only",
			setup:         func(t *testing.T, a *agent) { issueBootstrap(t, m, "kvm1", time.Hour).write(t, a.bootstrap) },
			wantBootstrap: true,
		},
		{
			name:    "neither",
			setup:   func(t *testing.T, a *agent) {},
			wantErr: []string{"is not secured", "no bootstrap certificate", "issueCertificate", ".key (mode 0600)"},
		},
		{
			name: "bootstrap key readable by others",
			setup: func(t *testing.T, a *agent) {
				issueBootstrap(t, m, "kvm1", time.Hour).write(t, a.bootstrap)
				require.NoError(t, os.Chmod(a.bootstrap+".key", 0o644))
			},
			wantErr: []string{"is accessible to others (mode 0644)"},
		},
		{
			name: "bootstrap key missing",
			setup: func(t *testing.T, a *agent) {
				issueBootstrap(t, m, "kvm1", time.Hour).write(t, a.bootstrap)
				require.NoError(t, os.Remove(a.bootstrap+".key"))
			},
			wantErr: []string{"bootstrap key"},
		},
		{
			name: "bootstrap key of another certificate",
			setup: func(t *testing.T, a *agent) {
				c := issueBootstrap(t, m, "kvm1", time.Hour)
				c.key = issueBootstrap(t, m, "kvm2", time.Hour).key
				c.write(t, a.bootstrap)
			},
			wantErr: []string{"bootstrap certificate"},
		},
		{
			name:    "expired bootstrap",
			setup:   func(t *testing.T, a *agent) { issueBootstrap(t, past, "kvm1", time.Hour).write(t, a.bootstrap) },
			wantErr: []string{"expired at", "issue a new one"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newTestAgent(t, "")
			tc.setup(t, a)
			creds, bootstrap, err := a.chooseCredentials(t.Context())
			if tc.wantErr != nil {
				require.Error(t, err)
				assert.ErrorIs(t, err, errNoCredentials)
				for _, w := range tc.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				assert.Nil(t, creds)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantBootstrap, bootstrap)
			want := filepath.Join(a.dir, keystore.CertFile)
			if tc.wantBootstrap {
				want = a.bootstrap + ".crt"
			}
			assert.Equal(t, serialOfPEM(t, want), serialOf(creds))
		})
	}
}

// TestRunCommandLine: bad command lines are usage errors, and an agent
// without credentials exits with errNoCredentials before dialling.
func TestRunCommandLine(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{name: "no dir", args: []string{"-servers", "127.0.0.1:1"}, usage: true, want: "-dir is required"},
		{name: "no servers", args: []string{"-dir", dir}, usage: true, want: "-servers is required"},
		{name: "empty servers", args: []string{"-dir", dir, "-servers", " , "}, usage: true, want: "-servers is required"},
		{name: "stray argument", args: []string{"-dir", dir, "-servers", "127.0.0.1:1", "x"}, usage: true, want: "unexpected arguments: x"},
		{name: "tiny backoff", args: []string{"-dir", dir, "-servers", "127.0.0.1:1", "-max-backoff", "1ms"}, usage: true, want: "-max-backoff"},
		{name: "no credentials", args: []string{"-dir", dir, "-servers", "127.0.0.1:1", "-hostid", "kvm1"}, want: "no bootstrap certificate " + filepath.Join(dir, "bootstrap.crt")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tc.args, &stdout, &stderr)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, tc.usage, errors.As(err, new(usageError)))
			assert.Empty(t, stdout.String(), "no event without a connection")
		})
	}
}

// TestRefusal recognises a server's TLS alert in a session's error and in
// each attempt of a dial, and nothing else.
func TestRefusal(t *testing.T) {
	alert := &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}
	tests := []struct {
		name     string
		err      error
		wantAddr string
		want     bool
	}{
		{name: "nil"},
		{name: "EOF", err: errors.New("ca: agent session: EOF")},
		{name: "dial refused", err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}},
		{name: "session alert", err: errors.Join(errors.New("ca: agent session"), alert), want: true},
		{name: "dial alert", err: &ca.DialError{Attempts: []ca.AttemptError{
			{Addr: "a:1", Err: errors.New("i/o timeout")}, {Addr: "b:2", Err: alert},
		}}, wantAddr: "b:2", want: true},
		{name: "dial without alert", err: &ca.DialError{Attempts: []ca.AttemptError{{Addr: "a:1", Err: errors.New("i/o timeout")}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, got := refusal(tc.err)
			assert.Equal(t, tc.want, got != nil)
			assert.Equal(t, tc.wantAddr, addr)
		})
	}
}

// TestFallback: after a refusal the agent switches to its other
// credentials when they are usable, and keeps its own otherwise.
func TestFallback(t *testing.T) {
	m := newManager(t, ca.Settings{}, 0)
	tests := []struct {
		name          string
		setup         func(t *testing.T, a *agent)
		onBootstrap   bool
		wantBootstrap bool
	}{
		{
			name:  "refused keystore certificate, fresh bootstrap",
			setup: func(t *testing.T, a *agent) { issueBootstrap(t, m, "kvm1", time.Hour).write(t, a.bootstrap) },
			// The agent starts on its secured directory.
			wantBootstrap: true,
		},
		{
			name:  "refused keystore certificate, no bootstrap",
			setup: func(t *testing.T, a *agent) {},
		},
		{
			name: "refused keystore certificate, bootstrap key readable by others",
			setup: func(t *testing.T, a *agent) {
				issueBootstrap(t, m, "kvm1", time.Hour).write(t, a.bootstrap)
				require.NoError(t, os.Chmod(a.bootstrap+".key", 0o640))
			},
		},
		{
			name:        "refused bootstrap certificate, secured directory",
			setup:       func(t *testing.T, a *agent) { issueBootstrap(t, m, "kvm1", time.Hour).write(t, a.bootstrap) },
			onBootstrap: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newTestAgent(t, "127.0.0.1:1")
			provision(t, a, m)
			tc.setup(t, a)
			files := a.keystoreFiles()
			if tc.onBootstrap {
				files = a.bootstrapFiles()
			}
			creds, err := ca.LoadAgentCredentials(files)
			require.NoError(t, err)
			a.use(creds, tc.onBootstrap)

			a.fallback(t.Context())
			_, got, bootstrap := a.current()
			assert.Equal(t, tc.wantBootstrap, bootstrap)
			want := filepath.Join(a.dir, keystore.CertFile)
			if tc.wantBootstrap {
				want = a.bootstrap + ".crt"
			}
			assert.Equal(t, serialOfPEM(t, want), serialOf(got))
		})
	}
}
