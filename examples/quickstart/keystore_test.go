package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/keystore"
)

// TestKeystoreSection runs the host onboarding step and checks what it
// reports and leaves on disk.
func TestKeystoreSection(t *testing.T) {
	ctx := context.Background()
	ca := sectionCA(t)
	dir := t.TempDir()

	var out bytes.Buffer
	require.NoError(t, keystoreSection(ctx, &out, ca, dir))
	text := out.String()
	for _, want := range []string{
		"host setup:    cloud.jks (PKCS12, alias cloud), CSR for CN=kvm1.example.org [kvm1.example.org] [127.0.0.1]",
		"host secured:  no (cloud.crt missing)",
		"host import:   CN=kvm1.example.org, chain of 2, 1 trusted CA as cloudca.1; wrote cloud.crt, cloud.key, cloud.ca.crt",
		"host secured:  yes, until ",
	} {
		assert.Contains(t, text, want)
	}
	agent := filepath.Join(dir, "agent")
	creds, err := keystore.CheckSecured(t.Context(), agent, nil)
	require.NoError(t, err)
	assert.True(t, creds.Chain[1].Equal(ca.Certificate()))
	fi, err := os.Stat(filepath.Join(agent, keystore.KeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}
