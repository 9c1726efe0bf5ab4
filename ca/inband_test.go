package ca_test

import (
	"context"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/keystore"
	"github.com/kvmpki/kvmpki/provider"
)

// memAgent is an in-memory AgentChannel: the agent's side of the
// platform's channel, answering with the real keystore package on a
// directory standing for /etc/cloudstack/agent.
type memAgent struct {
	dir string

	mu      sync.Mutex
	sent    []string // command names, in order
	reloads int
}

var _ ca.AgentChannel = (*memAgent)(nil)

func newMemAgent(t *testing.T) *memAgent { return &memAgent{dir: t.TempDir()} }

func (a *memAgent) Send(ctx context.Context, cmd ca.AgentCommand) (ca.AgentAnswer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch c := cmd.(type) {
	case *ca.SetupKeystoreCommand:
		a.sent = append(a.sent, "setup")
		res, err := keystore.Setup(ctx, a.dir, &keystore.SetupOptions{
			CommonName:   "kvm1",
			DNSNames:     c.Setup.DNSNames,
			IPAddresses:  c.Setup.IPAddresses,
			KeyAlgorithm: c.Setup.KeyAlgorithm,
			KeySize:      c.Setup.KeySize,
		})
		if err != nil {
			return nil, err
		}
		return &ca.SetupKeystoreAnswer{CSRPEM: res.CSR}, nil
	case *ca.SetupCertificateCommand:
		a.sent = append(a.sent, "certificate")
		if _, err := keystore.Import(ctx, a.dir, c.Install.CertificatePEM, c.Install.CABundlePEM, nil); err != nil {
			return nil, err
		}
		return &ca.SetupCertificateAnswer{}, nil
	case *ca.ReloadCommand:
		a.sent = append(a.sent, "reload")
		a.reloads++
		return &ca.ReloadAnswer{}, nil
	}
	return nil, errors.New("unknown command")
}

// TestAgentHostProvision provisions a host in-band: the agent's real
// keystore ends up holding the issued certificate, secured, after the
// three commands in order.
func TestAgentHostProvision(t *testing.T) {
	e := newEnv(t, nil)
	agent := newMemAgent(t)
	res := provisionKVM1(t, e, ca.NewAgentHost(agent), agent)
	assert.Equal(t, []string{"kvm1.example.org"}, res.Certificate.DNSNames)
}

// kvm1IP is the address provisionKVM1 gives the host.
var kvm1IP = net.ParseIP("192.0.2.10")

// provisionKVM1 provisions host "kvm1" (kvm1.example.org, kvm1IP)
// through h, whose agent side is agent, and checks what an in-band
// provisioning must leave: the three commands in order, a reload, and
// the agent's real keystore holding the issued certificate, secured.
func provisionKVM1(t *testing.T, e *env, h ca.Host, agent *memAgent) *ca.ProvisionResult {
	t.Helper()
	res, err := e.m.Provision(t.Context(), &ca.ProvisionRequest{
		Name: "kvm1", Host: h, DNSNames: []string{"kvm1.example.org"}, IPAddresses: []net.IP{kvm1IP},
	})
	require.NoError(t, err)
	assert.True(t, res.Reloaded)
	assert.Equal(t, []string{"setup", "certificate", "reload"}, agent.sent)
	creds, err := keystore.CheckSecured(t.Context(), agent.dir, nil)
	require.NoError(t, err)
	assert.Equal(t, res.Certificate.Raw, creds.Chain[0].Raw)
	return res
}

// TestAgentHostFailedImportKeepsCredentials: a certificate the agent's
// keystore refuses (another key's) leaves its files byte-identical, and
// the error names the command.
func TestAgentHostFailedImportKeepsCredentials(t *testing.T) {
	e := newEnv(t, nil)
	agent := newMemAgent(t)
	h := ca.NewAgentHost(agent)
	_, err := e.m.Provision(t.Context(), &ca.ProvisionRequest{Name: "kvm1", Host: h, DNSNames: []string{"kvm1.example.org"}})
	require.NoError(t, err)
	before := peers.ReadFiles(t, agent.dir)

	other, _ := e.issue(t, provider.RoleHost, []string{"kvm2.example.org"}, nil)
	bundle, err := e.m.CABundle(t.Context())
	require.NoError(t, err)
	err = h.InstallCertificate(t.Context(), &ca.CertificateInstall{CertificatePEM: provider.EncodeCertificates(other.Certificate), CABundlePEM: bundle})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ca: agent: SetupCertificateCommand: ")
	assert.Equal(t, before, peers.ReadFiles(t, agent.dir))
}

// channelFunc is an AgentChannel from a function.
type channelFunc func(ctx context.Context, cmd ca.AgentCommand) (ca.AgentAnswer, error)

func (f channelFunc) Send(ctx context.Context, cmd ca.AgentCommand) (ca.AgentAnswer, error) {
	return f(ctx, cmd)
}

// TestAgentHostBadAnswers: an agent's answer of the wrong type, a typed
// nil, a CSR that is missing or oversized, or a failed delivery is an
// error naming the command, never a panic.
func TestAgentHostBadAnswers(t *testing.T) {
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrFor(t, "kvm1", "kvm1.example.org")})
	errLost := errors.New("agent disconnected")
	tests := []struct {
		name string
		ans  ca.AgentAnswer
		err  error
		want string
	}{
		{name: "wrong type", ans: &ca.ReloadAnswer{}, want: "SetupKeystoreCommand answered with *ca.ReloadAnswer"},
		{name: "untyped nil", ans: nil, want: "answered with <nil>"},
		{name: "typed nil", ans: (*ca.SetupKeystoreAnswer)(nil), want: "answered with *ca.SetupKeystoreAnswer"},
		{name: "no CSR", ans: &ca.SetupKeystoreAnswer{CSRPEM: []byte("hello")}, want: "holds no CSR"},
		{name: "oversized CSR", ans: &ca.SetupKeystoreAnswer{CSRPEM: append(csr, strings.Repeat("x", 70<<10)...)}, want: "over 65536 bytes"},
		{name: "delivery failed", err: errLost, want: "ca: agent: SetupKeystoreCommand: agent disconnected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := ca.NewAgentHost(channelFunc(func(context.Context, ca.AgentCommand) (ca.AgentAnswer, error) { return tc.ans, tc.err }))
			_, err := h.SetupKeystore(t.Context(), &ca.KeystoreSetup{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			if tc.err != nil {
				assert.ErrorIs(t, err, tc.err)
			}
		})
	}
	t.Run("nil channel", func(t *testing.T) {
		assert.Error(t, ca.NewAgentHost(nil).Reload(t.Context()))
	})
	t.Run("done context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		called := false
		h := ca.NewAgentHost(channelFunc(func(context.Context, ca.AgentCommand) (ca.AgentAnswer, error) {
			called = true
			return &ca.ReloadAnswer{}, nil
		}))
		assert.ErrorIs(t, h.Reload(ctx), context.Canceled)
		assert.False(t, called)
	})
}
