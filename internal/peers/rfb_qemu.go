package peers

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
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

	verify := "on"
	if opts.NoVerifyPeer {
		verify = "off"
	}
	q := &QEMUVNC{}
	var lastErr error
	for attempt := range startAttempts {
		port, err := freePort(vncBasePort)
		if err != nil {
			t.Fatal(err)
		}
		q.Display = port - vncBasePort
		q.Addr = net.JoinHostPort("127.0.0.1", itoa(port))
		q.tracePath = filepath.Join(dir, fmt.Sprintf("trace-%d.log", attempt))
		q.proc, err = startProcess(t, dir, nil, "qemu-system-x86_64",
			"-nodefaults", "-no-user-config", "-display", "none", "-machine", "none",
			"-object", "tls-creds-x509,id=tls0,endpoint=server,verify-peer="+verify+",dir="+qemuOptValue(credsDir),
			"-object", "secret,id=vncpw,format=raw,file="+qemuOptValue(secretPath),
			"-vnc", fmt.Sprintf("127.0.0.1:%d,tls-creds=tls0,password-secret=vncpw", q.Display),
			"-trace", "vnc_auth_fail", "-trace", "vnc_auth_reject", "-D", q.tracePath,
		)
		if err != nil {
			t.Fatal(err)
		}
		err = q.proc.waitListening(port)
		if err == nil {
			return q, nil
		}
		lastErr = fmt.Errorf("%w\n%s", err, q.Log())
		if !strings.Contains(q.Log(), "Address already in use") {
			break
		}
		lastErr = fmt.Errorf("%w: %w", errPortInUse, lastErr)
	}
	return nil, lastErr
}
