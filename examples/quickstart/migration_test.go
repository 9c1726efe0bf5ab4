package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMigrationSection(t *testing.T) {
	ca := sectionCA(t)

	var out bytes.Buffer
	require.NoError(t, migrationSection(context.Background(), &out, ca, t.TempDir()))
	text := out.String()
	t.Log("\n" + text)
	for _, want := range []string{
		"migration:     kvm1 -> kvm2, both secured: native TLS (qemu+tls, VIR_MIGRATE_TLS)",
		"  flags        VIR_MIGRATE_LIVE|VIR_MIGRATE_TLS\n",
		"  dest URI     qemu+tls://10.0.0.2/system\n",
		"  param        migrate_uri=tcp://192.168.50.2\n",
		"  param        tls.destination=kvm2.example.org\n",
		"  virsh        virsh -c qemu+tls://10.0.0.1/system migrate --live --tls --domain vm1 --desturi qemu+tls://10.0.0.2/system --migrateuri tcp://192.168.50.2 --tls-destination kvm2.example.org\n",
		"migration:     kvm1 -> kvm3 refused: migration: refusing to migrate from kvm1 (10.0.0.1, secured) to kvm3 (2001:db8::3, unsecured: libvirtd has listen_tls=0)",
		"secure kvm3 (2001:db8::3) or choose a secured destination\n",
	} {
		assert.Contains(t, text, want)
	}
}
