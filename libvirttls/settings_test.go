package libvirttls

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/libvirtconf"
)

func render(settings []libvirtconf.Setting) string {
	var b strings.Builder
	for _, s := range settings {
		b.WriteString(s.String() + "\n")
	}
	return b.String()
}

func TestLibvirtdSettings(t *testing.T) {
	cnOnly, err := asn1.Marshal(pkix.Name{CommonName: "kvm2.example.org"}.ToRDNSequence())
	require.NoError(t, err)
	withComma, err := asn1.Marshal(pkix.Name{CommonName: "kvm2,example"}.ToRDNSequence())
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		opts    *Config
		withCRL bool
		want    string // lines that must be present
		absent  string // a key that must be absent
		err     string
	}{
		{name: "CloudStack's settings", opts: nil, absent: "auth_tcp",
			want: "listen_tls = 1\nlisten_tcp = 0\ntls_port = \"16514\"\ntcp_port = \"16509\"\nauth_tls = \"none\"\ntls_no_verify_certificate = 0\ntls_no_sanity_certificate = 0\n" +
				"key_file = \"/etc/pki/libvirt/private/serverkey.pem\"\ncert_file = \"/etc/pki/libvirt/servercert.pem\"\nca_file = \"/etc/pki/CA/cacert.pem\"\n"},
		{name: "CRL", opts: &Config{}, withCRL: true, want: "crl_file = \"/etc/pki/CA/cacrl.pem\"\n"},
		{name: "no CRL", opts: &Config{}, absent: "crl_file"},
		{name: "rooted paths", opts: &Config{Root: "/tmp/r", RootedConfigPaths: true}, withCRL: true,
			want: "ca_file = \"/tmp/r/etc/pki/CA/cacert.pem\"\ncrl_file = \"/tmp/r/etc/pki/CA/cacrl.pem\"\n"},
		{name: "ports and address", opts: &Config{TLSPort: 26514, TCPPort: 26509, ListenAddr: "::1"},
			want: "tls_port = \"26514\"\ntcp_port = \"26509\"\nlisten_addr = \"::1\"\n"},
		{name: "empty allow list rejects all", opts: &Config{AllowedDNs: []string{}}, want: "tls_allowed_dn_list = []\n"},
		{name: "clients and patterns", opts: &Config{AllowedDNs: []string{"CN=kvm*"}, AllowedClients: []*x509.Certificate{{RawSubject: cnOnly}}},
			want: "tls_allowed_dn_list = [\"CN=kvm*\", \"CN=kvm2.example.org\"]\n"},
		{name: "extra settings last", opts: &Config{ExtraLibvirtd: []libvirtconf.Setting{{Key: "host_uuid", Value: libvirtconf.StringValue("u")}}}, want: "ca_file = \"/etc/pki/CA/cacert.pem\"\nhost_uuid = \"u\"\n"},
		{name: "port out of range", opts: &Config{TLSPort: 70000}, err: "port out of range"},
		{name: "unrenderable client DN", opts: &Config{AllowedClients: []*x509.Certificate{{RawSubject: withComma}}}, err: "unsupported DN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.opts.LibvirtdSettings(tc.withCRL)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			got := render(s)
			assert.Contains(t, got, tc.want)
			if tc.absent != "" {
				assert.NotContains(t, got, tc.absent)
			}
		})
	}
}

func TestQEMUSettings(t *testing.T) {
	assert.Equal(t, "vnc_tls = 1\nvnc_tls_x509_cert_dir = \"/etc/pki/libvirt-vnc\"\nvnc_tls_x509_verify = 1\n"+
		"migrate_tls_x509_cert_dir = \"/etc/pki/qemu\"\nmigrate_tls_x509_verify = 1\n", render((*Config)(nil).QEMUSettings()))
	assert.Contains(t, render((&Config{MigrateTLSForce: true}).QEMUSettings()), "migrate_tls_force = 1\n")
	assert.NotContains(t, render((&Config{}).QEMUSettings()), "migrate_tls_force")
}
