package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
