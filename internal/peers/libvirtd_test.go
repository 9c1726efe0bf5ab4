package peers

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// connectCase is one virsh connection attempt.
type connectCase struct {
	name    string
	client  PKI
	host    string
	wantErr string // "" = accepted
}

func runConnectCases(t *testing.T, d *Libvirtd, cases []connectCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := d.Connect(t, tc.client, tc.host)
			if tc.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.wantErr)
			}
		})
	}
}

func TestLibvirtd(t *testing.T) {
	t.Parallel()
	Require(t, "libvirtd", "virsh")
	f := getFixture(t)
	pkcs1 := f.good()
	pkcs1.Key = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
		Bytes: x509.MarshalPKCS1PrivateKey(f.host.key.(*rsa.PrivateKey))})

	t.Run("accepts good clients, refuses others", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		d, err := StartLibvirtd(t, f.good(), LibvirtdOptions{})
		require.NoError(t, err)
		t.Logf("libvirtd listening on port %d after %v", d.Port, time.Since(start))
		runConnectCases(t, d, []connectCase{
			{name: "host cert via localhost", client: f.good(), host: "localhost"},
			{name: "host cert via IP", client: f.good(), host: "127.0.0.1"},
			{name: "PKCS #1 client key", client: pkcs1, host: "localhost"},
			{
				name: "foreign CA client cert",
				// The client's cacert.pem holds both CAs, or virsh's own
				// sanity check refuses the certificate before connecting.
				// GnuTLS then sends no certificate at all, as its issuer
				// is not among the CAs libvirtd lists, so libvirtd logs
				// "No certificate was found".
				client: PKI{
					CACert: append(append([]byte{}, f.ca.pem...), f.foreignCA.pem...),
					Cert:   f.foreignHost.pem,
					Key:    f.foreignHost.keyPEM,
				},
				host:    "localhost",
				wantErr: "Failed to verify peer's certificate",
			},
			{
				name:    "no client cert",
				client:  PKI{CACert: f.ca.pem},
				host:    "localhost",
				wantErr: "No certificate was found",
			},
			{
				name:    "client does not trust the server",
				client:  pkiOf(f.foreignCA, f.foreignHost),
				host:    "localhost",
				wantErr: "Failed to verify peer's certificate",
			},
			{
				name:    "own cert not signed by its CA",
				client:  f.foreign(),
				host:    "localhost",
				wantErr: "Our own certificate",
			},
		})
	})

	t.Run("CRL", func(t *testing.T) {
		t.Parallel()
		server := f.good()
		server.CRL = f.crlRevoking
		d, err := StartLibvirtd(t, server, LibvirtdOptions{})
		require.NoError(t, err)
		runConnectCases(t, d, []connectCase{
			{name: "unrevoked client", client: f.good(), host: "localhost"},
			{name: "revoked client", client: pkiOf(f.ca, f.revoked), host: "localhost", wantErr: "revoked"},
		})
	})

	t.Run("server cert without IP SAN", func(t *testing.T) {
		t.Parallel()
		d, err := StartLibvirtd(t, pkiOf(f.ca, f.dnsOnly), LibvirtdOptions{})
		require.NoError(t, err)
		runConnectCases(t, d, []connectCase{
			{name: "via localhost", client: f.good(), host: "localhost"},
			{name: "via IP", client: f.good(), host: "127.0.0.1", wantErr: "does not match the hostname 127.0.0.1"},
		})
	})

	dnTests := []struct {
		name    string
		allowed []string
		wantErr string
	}{
		{name: "DN glob in certificate order", allowed: []string{"O=Test,CN=local*"}},
		{name: "DN in RFC 4514 order", allowed: []string{"CN=localhost,O=Test"}, wantErr: "Distinguished Name is not on the list"},
		{name: "empty DN list", allowed: []string{}, wantErr: "Distinguished Name is not on the list"},
	}
	for _, tc := range dnTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := StartLibvirtd(t, f.good(), LibvirtdOptions{AllowedDNs: tc.allowed})
			require.NoError(t, err)
			runConnectCases(t, d, []connectCase{{name: "host cert", client: f.good(), host: "localhost", wantErr: tc.wantErr}})
		})
	}

	startTests := []struct {
		name    string
		server  PKI
		wantErr string
	}{
		{
			name:    "ECDSA leaf with digitalSignature-only keyUsage",
			server:  pkiOf(f.ca, f.ecdsaDSOnly),
			wantErr: "usage does not permit key encipherment",
		},
		{
			name:    "server cert from a CA not in ca_file",
			server:  PKI{CACert: f.ca.pem, Cert: f.foreignHost.pem, Key: f.foreignHost.keyPEM},
			wantErr: "failed validation against",
		},
	}
	for _, tc := range startTests {
		t.Run("refuses to start: "+tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := StartLibvirtd(t, tc.server, LibvirtdOptions{})
			assert.Nil(t, d)
			assert.ErrorContains(t, err, tc.wantErr)
			assert.NotErrorIs(t, err, errPortInUse)
		})
	}
}
