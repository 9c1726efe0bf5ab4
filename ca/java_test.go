package ca_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
)

// javaPing runs testdata/AgentPing.java against addr with client (nil:
// no key store) and returns its output and error.
func javaPing(t *testing.T, caPEM []byte, client *tls.Certificate, addr string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/AgentPing.java")
	require.NoError(t, err)
	writeFile(t, dir, "AgentPing.java", src, 0o644)
	writeFile(t, dir, "ca.pem", caPEM, 0o644)
	pass := rand.Text()
	if client != nil {
		leaf, err := x509.ParseCertificate(client.Certificate[0])
		require.NoError(t, err)
		p12, err := pkcs12.Modern.Encode(client.PrivateKey, leaf, nil, pass)
		require.NoError(t, err)
		writeFile(t, dir, "agent.p12", p12, 0o600)
	}
	_, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "AgentPing.java", dir, "127.0.0.1", port)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KVMPKI_P12_PASS="+pass)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A Java JSSE client, as the CloudStack agent is, with a PKCS #12 key
// store, against the agent port: accepted with a host certificate;
// revoked, expired, foreign-CA, missing and server-role certificates are
// each refused with the reason reported on the server.
func TestInteropJavaAgent(t *testing.T) {
	peers.Require(t, "java")
	e := newEnv(t, nil)
	id := e.identity(t)
	caPEM := provider.EncodeCertificates(e.caCert)
	_, good := e.issue(t, provider.RoleHost, []string{"kvm1.example.org"}, nil)
	revRes, revoked := e.issue(t, provider.RoleHost, []string{"kvm2.example.org"}, nil)
	require.NoError(t, e.m.Revoke(t.Context(), &ca.RevokeRequest{Serial: revRes.Certificate.SerialNumber.Text(16)}))
	_, serverRole := e.issue(t, provider.RoleServer, []string{"kvm3.example.org"}, nil)
	foreign := foreignCert(t)
	expRes, expired := e.issue(t, provider.RoleHost, []string{"kvm4.example.org"}, nil)

	tests := []struct {
		name   string
		client *tls.Certificate
		expire bool
		want   error
	}{
		{"host certificate", &good, false, nil},
		{"revoked", &revoked, false, ca.ErrRevoked},
		{"foreign CA", &foreign, false, ca.ErrUnknownAuthority},
		{"missing", nil, false, ca.ErrNoCertificate},
		{"server role", &serverRole, false, ca.ErrIncompatibleUsage},
		{"expired", &expired, true, ca.ErrExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.expire {
				e.clock.Set(expRes.Certificate.NotAfter.Add(time.Hour))
			}
			var log refusalLog
			s := e.serveAgents(t, &ca.AgentServerConfig{Identity: id, OnRefusal: log.add})
			out, err := javaPing(t, caPEM, tc.client, s.addr)
			if tc.want == nil {
				require.NoError(t, err, out)
				assert.Contains(t, out, "answer: pong")
				assert.Empty(t, log.all())
				return
			}
			assert.Error(t, err, out)
			assert.NotContains(t, out, "answer: pong")
			require.NotEmpty(t, log.all(), out)
			assert.ErrorIs(t, log.all()[0].Err, tc.want)
			t.Logf("server reported: %v", log.all()[0].Err)
		})
	}
}
