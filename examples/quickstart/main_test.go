package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rootca"
)

// TestRun runs the main job and checks each step it reports.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out))
	text := out.String()
	for _, want := range []string{
		"CA created:    CN=kvmpki root CA,O=kvmpki",
		"host cert:     CN=kvm1.example.org",
		"role host",
		"proxy cert:    CN=console-proxy",
		"role client",
		"handshake:     ok",
		"revoked:       proxy cert",
		"handshake:     refused: provider: peer certificate \"CN=console-proxy\"",
		"reason keyCompromise",
		"CRL:           number 1",
		"1 revoked",
	} {
		assert.Contains(t, text, want)
	}
}

// sectionCA returns a CA for a section's test: P-256, in memory, closed at
// the end of the test.
func sectionCA(t *testing.T) *rootca.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca, err := rootca.Create(t.Context(), rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: key}})
	require.NoError(t, err)
	t.Cleanup(func() { ca.Close() })
	return ca
}
