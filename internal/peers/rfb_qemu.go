package peers

import (
	"os"
	"path/filepath"
	"testing"
)

// StartQEMUVNCPassword is StartQEMUVNC with VNC password authentication
// inside TLS: QEMU then offers VeNCrypt X509Vnc (261), as a CloudStack
// VM's console does. The password reaches QEMU through a secret object
// read from a file with mode 0600 (password-secret=), never through the
// command line.
func StartQEMUVNCPassword(t testing.TB, server PKI, password []byte, opts QEMUVNCOptions) (*QEMUVNC, error) {
	t.Helper()
	Require(t, "qemu-system-x86_64")
	dir := t.TempDir()
	credsDir := filepath.Join(dir, "creds")
	if err := os.Mkdir(credsDir, 0o700); err != nil {
		t.Fatalf("peers: %v", err)
	}
	if err := server.writeLayout(t, credsDir, qemuServerLayout, fileSpec{name: "dh-params.pem", data: []byte(ffdhe2048)}); err != nil {
		return nil, err
	}
	secretPath := filepath.Join(dir, "vnc-password")
	if err := writeNew(secretPath, password, 0o600); err != nil {
		t.Fatal(err)
	}

	return startQEMUVNC(t, dir, credsDir, secretPath, opts)
}
