package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLibvirttlsSection(t *testing.T) {
	ca := sectionCA(t)

	var out bytes.Buffer
	require.NoError(t, libvirttlsSection(context.Background(), &out, ca, t.TempDir()))
	text := out.String()
	t.Log(text)
	for _, want := range []string{
		"secure host:   kvm1 under a temporary root: 16 PKI files, 2 config files",
		"libvirtd     listen_tls = 1",
		`libvirtd     crl_file = "/etc/pki/CA/cacrl.pem"`,
		`libvirtd     tls_allowed_dn_list = ["CN=kvm1.example.org"]`,
		`qemu         migrate_tls_x509_cert_dir = "/etc/pki/qemu"`,
		"qemu         migrate_tls_force = 1",
		"action       systemctl restart libvirtd.service",
		"state        secured\n",
		"plan again   no changes\n",
		"key removed  not secured: libvirttls: credentials missing: /etc/pki/libvirt/private/serverkey.pem",
	} {
		assert.Contains(t, text, want)
	}
}
