package peers

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQEMUMigrationPlain migrates a guest between two QEMU processes
// without TLS, and checks the loaded memory arrived.
func TestQEMUMigrationPlain(t *testing.T) {
	t.Parallel()
	Require(t, "qemu-system-x86_64")
	page := make([]byte, 4096)
	for i := range page {
		page[i] = byte(i * 7)
	}
	file := filepath.Join(t.TempDir(), "page.bin")
	require.NoError(t, os.WriteFile(file, page, 0o600))
	const addr = 0x1000000

	dst, err := StartQEMUMigration(t, QEMUMigrationOptions{Incoming: true})
	require.NoError(t, err)
	src, err := StartQEMUMigration(t, QEMUMigrationOptions{Memory: []MemoryImage{{File: file, Addr: addr}}})
	require.NoError(t, err)
	assert.Empty(t, src.CredsID)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	uri := fmt.Sprintf("tcp:127.0.0.1:%d", port)
	_, err = dst.QMP("migrate-incoming", map[string]any{"uri": uri})
	require.NoError(t, err)
	_, err = src.QMP("migrate", map[string]any{"uri": uri})
	require.NoError(t, err)
	st, err := src.WaitMigration(t.Context())
	require.NoError(t, err)
	require.Equal(t, "completed", st.Status, st.ErrorDesc)
	assert.Positive(t, st.TotalTime)

	mem, err := dst.ReadMemory(addr, len(page))
	require.NoError(t, err)
	assert.Equal(t, page, mem)
	raw, err := dst.QMP("query-status", nil)
	require.NoError(t, err)
	var status struct{ Running bool }
	require.NoError(t, json.Unmarshal(raw, &status))
	assert.True(t, status.Running)

	_, err = src.QMP("no-such-command", nil)
	assert.ErrorContains(t, err, "CommandNotFound")
	assert.False(t, src.Exited())
}

// TestQEMUMigrationRefusesMissingCreds shows QEMU's own refusal of a
// credentials directory without ca-cert.pem.
func TestQEMUMigrationRefusesMissingCreds(t *testing.T) {
	t.Parallel()
	Require(t, "qemu-system-x86_64")
	_, err := StartQEMUMigration(t, QEMUMigrationOptions{CredsDir: t.TempDir(), Incoming: true})
	require.Error(t, err)
	assert.ErrorContains(t, err, "Unable to access credentials")
}
