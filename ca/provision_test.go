package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

// recordingHost is a Host that keeps its key, installs into memory and
// fails the step it is told to.
type recordingHost struct {
	key       *ecdsa.PrivateKey
	csrNames  []string // names the CSR asks for; the request's when nil
	failAt    ca.ProvisionStep
	setup     *ca.KeystoreSetup
	installed *ca.CertificateInstall
	reloads   int
}

var errHostStep = errors.New("host step failed")

func (h *recordingHost) SetupKeystore(ctx context.Context, req *ca.KeystoreSetup) ([]byte, error) {
	h.setup = req
	if h.failAt == ca.StepSetup {
		return nil, errHostStep
	}
	names := h.csrNames
	if names == nil {
		names = req.DNSNames
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "kvm1"}, DNSNames: names, IPAddresses: req.IPAddresses,
	}, h.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func (h *recordingHost) InstallCertificate(ctx context.Context, c *ca.CertificateInstall) error {
	if h.failAt == ca.StepInstall {
		return errHostStep
	}
	h.installed = c
	return nil
}

func (h *recordingHost) Reload(ctx context.Context) error {
	if h.failAt == ca.StepReload {
		return errHostStep
	}
	h.reloads++
	return nil
}

func newRecordingHost(t *testing.T) *recordingHost {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return &recordingHost{key: key}
}

func TestProvision(t *testing.T) {
	e := newEnv(t, nil)
	h := newRecordingHost(t)
	ip := net.ParseIP("192.0.2.10")
	res, err := e.m.Provision(t.Context(), &ca.ProvisionRequest{
		Name: "kvm1", Host: h, DNSNames: []string{"kvm1.example.org"}, IPAddresses: []net.IP{ip},
	})
	require.NoError(t, err)
	require.True(t, res.Reloaded)
	assert.Equal(t, 1, h.reloads)

	// The host was asked for its names, and the certificate certifies
	// the host's own key with them, as a host (server and client).
	require.NotNil(t, h.setup)
	assert.Equal(t, []string{"kvm1.example.org"}, h.setup.DNSNames)
	cert := res.Certificate
	assert.True(t, cert.PublicKey.(*ecdsa.PublicKey).Equal(&h.key.PublicKey))
	assert.Contains(t, cert.DNSNames, "kvm1.example.org")
	require.Len(t, cert.IPAddresses, 1)
	assert.True(t, cert.IPAddresses[0].Equal(ip))
	assert.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage)

	// What was installed: the leaf (no root) and the whole CA bundle, and
	// the leaf verifies against that bundle.
	require.NotNil(t, h.installed)
	leafBlock, rest := pem.Decode(h.installed.CertificatePEM)
	require.NotNil(t, leafBlock)
	assert.Equal(t, cert.Raw, leafBlock.Bytes)
	assert.Empty(t, rest, "a root CA never travels in the host's chain")
	bundle, err := e.m.CABundle(t.Context())
	require.NoError(t, err)
	assert.Equal(t, bundle, h.installed.CABundlePEM)
	assert.Equal(t, provider.FormatSerial(cert.SerialNumber), h.installed.Serial)
	_, err = cert.Verify(x509.VerifyOptions{Roots: e.pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.NoError(t, err)
}

func TestProvisionFailures(t *testing.T) {
	tests := []struct {
		name      string
		host      func(h *recordingHost)
		req       func(r *ca.ProvisionRequest)
		step      ca.ProvisionStep
		wantErr   error
		installed bool
		result    bool
	}{
		{name: "setup fails", host: func(h *recordingHost) { h.failAt = ca.StepSetup }, step: ca.StepSetup, wantErr: errHostStep},
		{name: "CSR asks for the management marker", host: func(h *recordingHost) { h.csrNames = []string{"management.cloudstack.internal"} },
			step: ca.StepIssue, wantErr: ca.ErrManagementName},
		{name: "validity beyond the maximum", req: func(r *ca.ProvisionRequest) { r.Validity = 1 << 62 }, step: ca.StepIssue, wantErr: ca.ErrInvalidRequest},
		{name: "install fails", host: func(h *recordingHost) { h.failAt = ca.StepInstall }, step: ca.StepInstall, wantErr: errHostStep},
		{name: "reload fails after install", host: func(h *recordingHost) { h.failAt = ca.StepReload }, step: ca.StepReload, wantErr: errHostStep,
			installed: true, result: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, &envOptions{settings: ca.Settings{ManagementSAN: "management.cloudstack.internal"}})
			h := newRecordingHost(t)
			if tc.host != nil {
				tc.host(h)
			}
			req := &ca.ProvisionRequest{Name: "kvm1", Host: h, DNSNames: []string{"kvm1.example.org"}}
			if tc.req != nil {
				tc.req(req)
			}
			res, err := e.m.Provision(t.Context(), req)
			require.Error(t, err)
			var pe *ca.ProvisionError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, "kvm1", pe.Host)
			assert.Equal(t, tc.step, pe.Step)
			assert.ErrorIs(t, err, tc.wantErr)
			assert.Contains(t, err.Error(), "kvm1")
			assert.Equal(t, tc.installed, h.installed != nil)
			if tc.result {
				require.NotNil(t, res)
				assert.False(t, res.Reloaded)
			} else {
				assert.Nil(t, res)
			}
		})
	}
}

func TestProvisionNeedsHost(t *testing.T) {
	e := newEnv(t, nil)
	for _, req := range []*ca.ProvisionRequest{nil, {Name: "kvm1"}, {Host: newRecordingHost(t)}} {
		_, err := e.m.Provision(t.Context(), req)
		assert.ErrorIs(t, err, provider.ErrInvalidRequest)
	}
}

// blockingHost holds its keystore setup until released.
type blockingHost struct {
	*recordingHost
	entered chan struct{}
	release chan struct{}
}

func (h *blockingHost) SetupKeystore(ctx context.Context, req *ca.KeystoreSetup) ([]byte, error) {
	close(h.entered)
	<-h.release
	return h.recordingHost.SetupKeystore(ctx, req)
}

// TestProvisionOneAtATimePerHost: while a host is being provisioned, a
// second Provision of the same host fails at once with ErrProvisionBusy
// and touches nothing; another host goes ahead; once the first ends, the
// host can be provisioned again.
func TestProvisionOneAtATimePerHost(t *testing.T) {
	e := newEnv(t, nil)
	first := &blockingHost{recordingHost: newRecordingHost(t), entered: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := e.m.Provision(t.Context(), &ca.ProvisionRequest{Name: "kvm1", Host: first, DNSNames: []string{"kvm1.example.org"}})
		done <- err
	}()
	<-first.entered

	second := newRecordingHost(t)
	_, err := e.m.Provision(t.Context(), &ca.ProvisionRequest{Name: "kvm1", Host: second, DNSNames: []string{"kvm1.example.org"}})
	require.ErrorIs(t, err, ca.ErrProvisionBusy)
	assert.Nil(t, second.setup, "the busy call never reached the host")

	other := newRecordingHost(t)
	_, err = e.m.Provision(t.Context(), &ca.ProvisionRequest{Name: "kvm2", Host: other, DNSNames: []string{"kvm2.example.org"}})
	require.NoError(t, err, "another host is not held up")

	close(first.release)
	require.NoError(t, <-done)
	_, err = e.m.Provision(t.Context(), &ca.ProvisionRequest{Name: "kvm1", Host: second, DNSNames: []string{"kvm1.example.org"}})
	assert.NoError(t, err, "free again once the first call ended")
}
