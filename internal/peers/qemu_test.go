package peers

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// probeCase is one VNC client attempt.
type probeCase struct {
	name       string
	client     PKI
	serverName string
	wantErr    string // "" = accepted
	refused    bool   // QEMU closed after the handshake
}

func runProbeCases(t *testing.T, q *QEMUVNC, cases []probeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.client.ClientTLSConfig(tc.serverName)
			require.NoError(t, err)
			err = q.Probe(t, cfg)
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.wantErr)
			if tc.refused {
				assert.ErrorIs(t, err, errVNCRefused)
			}
		})
	}
}

func TestQEMUVNC(t *testing.T) {
	t.Parallel()
	Require(t, "qemu-system-x86_64")
	f := getFixture(t)

	t.Run("verify-peer on", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		q, err := StartQEMUVNC(t, f.good(), QEMUVNCOptions{})
		require.NoError(t, err)
		t.Logf("QEMU listening on %s (display %d) after %v", q.Addr, q.Display, time.Since(start))
		runProbeCases(t, q, []probeCase{
			{name: "host cert via IP", client: f.good()},
			{name: "host cert via localhost", client: f.good(), serverName: "localhost"},
			{
				name:    "foreign CA client cert",
				client:  f.foreign(),
				wantErr: "The certificate hasn't got a known issuer",
				refused: true,
			},
			{
				name:    "no client cert",
				client:  PKI{CACert: f.ca.pem},
				wantErr: "No certificate was found",
				refused: true,
			},
			{
				name:    "Go does not trust QEMU",
				client:  pkiOf(f.foreignCA, f.foreignHost),
				wantErr: "certificate signed by unknown authority",
			},
			{
				name:       "name not in QEMU's cert",
				client:     f.good(),
				serverName: "other.example",
				wantErr:    "not other.example",
			},
		})
	})

	t.Run("verify-peer off", func(t *testing.T) {
		t.Parallel()
		q, err := StartQEMUVNC(t, f.good(), QEMUVNCOptions{NoVerifyPeer: true})
		require.NoError(t, err)
		runProbeCases(t, q, []probeCase{
			{name: "no client cert", client: PKI{CACert: f.ca.pem}},
			{name: "foreign CA client cert", client: f.foreign()},
		})
	})

	t.Run("CRL", func(t *testing.T) {
		t.Parallel()
		server := f.good()
		server.CRL = f.crlRevoking
		q, err := StartQEMUVNC(t, server, QEMUVNCOptions{})
		require.NoError(t, err)
		runProbeCases(t, q, []probeCase{
			{name: "unrevoked client", client: f.good()},
			{name: "revoked client", client: pkiOf(f.ca, f.revoked), wantErr: "revoked", refused: true},
		})
	})

	startTests := []struct {
		name    string
		server  PKI
		wantErr string
	}{
		{
			name:    "CA:TRUE server cert",
			server:  pkiOf(f.ca, f.caLeaf),
			wantErr: "basic constraints show a CA, but we need one for a server",
		},
		{
			name:    "server cert from a CA not in ca-cert.pem",
			server:  PKI{CACert: f.ca.pem, Cert: f.foreignHost.pem, Key: f.foreignHost.keyPEM},
			wantErr: "failed validation against",
		},
	}
	for _, tc := range startTests {
		t.Run("refuses to start: "+tc.name, func(t *testing.T) {
			t.Parallel()
			q, err := StartQEMUVNC(t, tc.server, QEMUVNCOptions{})
			assert.Nil(t, q)
			assert.ErrorContains(t, err, tc.wantErr)
		})
	}

	t.Run("ECDSA leaf with digitalSignature-only keyUsage", func(t *testing.T) {
		t.Parallel()
		// Debian's QEMU 7.2 carries the fix that dropped the
		// keyEncipherment requirement, unlike libvirt 9.0.
		q, err := StartQEMUVNC(t, pkiOf(f.ca, f.ecdsaDSOnly), QEMUVNCOptions{})
		require.NoError(t, err)
		runProbeCases(t, q, []probeCase{{name: "host cert", client: f.good(), serverName: "localhost"}})
	})
}

func TestProbeNeedsConfig(t *testing.T) {
	t.Parallel()
	var q QEMUVNC
	assert.EqualError(t, q.Probe(t, (*tls.Config)(nil)), "peers: Probe needs a tls.Config")
}
