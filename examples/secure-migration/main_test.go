package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
)

// TestSecureMigration runs the whole story: two libvirtd daemons secured
// by libvirttls, a TCG guest migrated with the migration package's plan.
// It needs root and the binaries of requiredBinaries; it skips without
// them, and fails under KVMPKI_INTEROP=require.
func TestSecureMigration(t *testing.T) {
	peers.Require(t, "libvirtd", "virsh", "qemu-system-x86_64")
	if err := checkAvailable(); errors.Is(err, errUnavailable) {
		if os.Getenv(peers.InteropEnv) == "require" {
			t.Fatalf("%v; %s=require forbids skipping", err, peers.InteropEnv)
		}
		t.Skipf("%v; skipping (set %s=require to fail instead)", err, peers.InteropEnv)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, &out, options{work: t.TempDir()})
	t.Log("\n" + out.String())
	require.NoError(t, err)
	text := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^kvm1: +secured by libvirttls \(\d+ changes\), secured, libvirtd TLS on 127\.0\.0\.2:\d+$`),
		regexp.MustCompile(`(?m)^kvm2: +secured by libvirttls \(\d+ changes\), secured, libvirtd TLS on 127\.0\.0\.3:\d+$`),
		regexp.MustCompile(`(?m)^guest: +kvmpki-demo running on kvm1`),
		regexp.MustCompile(`(?m)^preflight: +kvm1 -> kvm2: kvm2's libvirtd accepts kvm1's certificate$`),
		// CloudStack's flags: QEMU's magic and the guest's memory in clear.
		regexp.MustCompile(`(?m)^cleartext: +kvm1 -> kvm2 with CloudStack's flags \(VIR_MIGRATE_LIVE\): .* starting 51 45 56 4d .*marker seen [1-9]\d* times$`),
		regexp.MustCompile(`(?m)^plan: +native TLS \(qemu\+tls, VIR_MIGRATE_TLS\); flags VIR_MIGRATE_LIVE\|VIR_MIGRATE_TLS; migrate URI tcp://127\.0\.0\.5:\d+; TLS destination kvm1\.example\.org$`),
		// The plan: a TLS record first, the marker never.
		regexp.MustCompile(`(?m)^migrated: +kvm2 -> kvm1 with native TLS: .* carried [1-9]\d{5,} bytes starting 16 03 01 \S+ \S+ 01 .*\(TLS: \d+ well-formed records, nothing outside them\), marker seen 0 times$`),
		regexp.MustCompile(`(?m)^on kvm1: +kvmpki-demo is running$`),
		regexp.MustCompile(`(?m)^ +\+migrate_tls_force = 1$`),
		regexp.MustCompile(`(?m)^refused: +kvm1 -> kvm2 without VIR_MIGRATE_TLS: migration: destination accepts only TLS migrations: .*allows migration only with VIR_MIGRATE_TLS flag$`),
		regexp.MustCompile(`(?m)^migrated: +kvm1 -> kvm2 with native TLS: .* carried [1-9]\d{5,} bytes starting 16 03 01 \S+ \S+ 01 .*\(TLS: \d+ well-formed records, nothing outside them\), marker seen 0 times$`),
		regexp.MustCompile(`(?m)^on kvm2: +kvmpki-demo is running$`),
		regexp.MustCompile(`(?m)^tunnelled: +kvm2 -> kvm1 with flags VIR_MIGRATE_LIVE\|VIR_MIGRATE_PEER2PEER\|VIR_MIGRATE_TUNNELLED in .*; kvmpki-demo is running on kvm1$`),
		regexp.MustCompile(`(?m)^refused: +kvm1 -> kvm3: migration: refusing to migrate from kvm1 \(127\.0\.0\.2, secured\) to kvm3 \(127\.0\.0\.6, unsecured: credentials missing: /etc/pki/CA/cacert.pem; .*\): a secured host's guests move only to secured hosts`),
	} {
		assert.Regexp(t, want, text)
	}
}
