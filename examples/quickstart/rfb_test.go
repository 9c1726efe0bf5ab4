package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRFBSection(t *testing.T) {
	ca := sectionCA(t)

	dir := t.TempDir()
	var out bytes.Buffer
	require.NoError(t, rfbSection(context.Background(), &out, ca, dir))
	text := out.String()
	t.Log(text)
	for _, want := range []string{
		"vnc console:   RFB 3.8, VeNCrypt X509Vnc (261), TLS 1.3 TLS_",
		"server CN=kvm1.example.org verified by CN=kvmpki root CA,O=kvmpki",
		`vnc screen:    "QEMU (vm-42)" 640x480 saved as vm-42.png`,
		"vnc refused:   rfb: server closed the connection right after the TLS handshake: it rejected the TLS client",
	} {
		assert.Contains(t, text, want)
	}
	fh, err := os.Open(filepath.Join(dir, "vm-42.png"))
	require.NoError(t, err)
	defer fh.Close()
	img, err := png.Decode(fh)
	require.NoError(t, err)
	assert.Equal(t, 640, img.Bounds().Dx())
}
