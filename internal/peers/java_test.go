package peers

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestJava(t *testing.T) {
	t.Parallel()
	requireJava(t)
	f := getFixture(t)
	chain := append(append([]byte{}, f.interLeaf.pem...), f.inter.pem...)
	withCRL := func(p PKI) PKI { p.CRL = f.crlRevoking; return p }

	clientTests := []struct {
		name    string
		java    PKI // Java's trust and optional client identity
		server  PKI // the Go server's identity
		host    string
		wantErr string
	}{
		{name: "host cert via localhost", java: f.good(), server: f.good(), host: "localhost"},
		{name: "chain via IP, no client cert", java: PKI{CACert: f.ca.pem}, server: PKI{Cert: chain, Key: f.interLeaf.keyPEM}, host: "127.0.0.1"},
		{
			name:    "server cert from a foreign CA",
			java:    PKI{CACert: f.ca.pem},
			server:  pkiOf(f.foreignCA, f.foreignHost),
			host:    "localhost",
			wantErr: "unable to find valid certification path",
		},
		{
			name:    "server cert without IP SAN via IP",
			java:    PKI{CACert: f.ca.pem},
			server:  pkiOf(f.ca, f.dnsOnly),
			host:    "127.0.0.1",
			wantErr: "No subject alternative names matching IP address 127.0.0.1 found",
		},
	}
	for _, tc := range clientTests {
		t.Run("client: "+tc.name, func(t *testing.T) {
			t.Parallel()
			err := JavaClient(t, tc.java, tc.server, tc.host)
			if tc.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.wantErr)
			}
		})
	}

	serverTests := []struct {
		name    string
		java    PKI // Java's identity, trust and CRL
		client  PKI // the Go client's identity
		wantErr string
	}{
		{name: "host cert, CRL without it", java: withCRL(f.good()), client: f.good()},
		{
			name:    "client cert from a foreign CA",
			java:    f.good(),
			client:  f.foreign(),
			wantErr: "unable to find valid certification path",
		},
		{
			name:    "revoked client cert",
			java:    withCRL(f.good()),
			client:  pkiOf(f.ca, f.revoked),
			wantErr: "Certificate has been revoked",
		},
	}
	for _, tc := range serverTests {
		t.Run("server: "+tc.name, func(t *testing.T) {
			t.Parallel()
			err := JavaServer(t, tc.java, tc.client)
			if tc.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.wantErr)
			}
		})
	}
}

func TestKeytoolImportCA(t *testing.T) {
	t.Parallel()
	Require(t, "keytool")
	f := getFixture(t)
	tests := []struct {
		name    string
		ca      []byte
		wantErr string
	}{
		{name: "one CA", ca: f.ca.pem},
		{name: "CA bundle", ca: append(append([]byte{}, f.ca.pem...), f.foreignCA.pem...)},
		{name: "no certificate", ca: f.host.keyPEM, wantErr: "peers: caCert holds no PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := KeytoolImportCA(t, tc.ca)
			if tc.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.wantErr)
			}
		})
	}
}
