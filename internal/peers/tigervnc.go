package peers

import (
	"bytes"
	"context"
	"fmt"
	"net"

	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Xtigervnc is a throwaway TigerVNC X server (Xtigervnc 1.12) offering
// only VeNCrypt X509Vnc, started by StartXtigervnc and stopped when the
// test ends.
type Xtigervnc struct {
	// Addr is the VNC server's TCP address, "127.0.0.1:PORT".
	Addr string
	// Display is the X display number.
	Display int

	proc *process
}

// requireTigerVNC is Require for Xtigervnc and vncpasswd, whose Debian
// packages the shared table does not name.
func requireTigerVNC(t testing.TB) {
	t.Helper()
	for _, bin := range []struct{ name, pkg string }{
		{"Xtigervnc", "tigervnc-standalone-server"},
		{"vncpasswd", "tigervnc-tools"},
	} {
		if _, err := exec.LookPath(bin.name); err != nil {
			unavailable(t, bin.name+" not found in PATH (Debian package "+bin.pkg+")")
		}
	}
}

// RequireTigerVNC skips t, or fails it under KVMPKI_INTEROP=require,
// unless Xtigervnc and vncpasswd are on PATH.
func RequireTigerVNC(t testing.TB) { t.Helper(); requireTigerVNC(t) }

// StartXtigervnc starts Xtigervnc with -SecurityTypes X509Vnc, server.Cert
// and server.Key as its certificate and key, and password as its VNC
// password. The password file is made by vncpasswd -f from standard
// input, never from the command line. Xtigervnc does not ask for client
// certificates. The framebuffer is 640x480, depth 24.
func StartXtigervnc(t testing.TB, server PKI, password []byte) (*Xtigervnc, error) {
	t.Helper()
	requireTigerVNC(t)
	dir := t.TempDir()
	if err := server.writeLayout(t, dir, layout{cert: "server-cert.pem", key: "server-key.pem"}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "vncpasswd", "-f")
	cmd.Stdin = bytes.NewReader(append(append([]byte(nil), password...), '\n'))
	obfuscated, err := cmd.Output()
	if err != nil {
		t.Fatalf("peers: vncpasswd -f: %v", err)
	}
	passwdPath := filepath.Join(dir, "passwd")
	if err := writeNew(passwdPath, obfuscated, 0o600); err != nil {
		t.Fatal(err)
	}

	x := &Xtigervnc{}
	var lastErr error
	for range startAttempts {
		port, err := freePort(vncBasePort)
		if err != nil {
			t.Fatal(err)
		}
		// A display number unlikely to be taken: X sockets and lock
		// files are per display, shared by everyone on the machine.
		x.Display = port
		x.Addr = net.JoinHostPort("127.0.0.1", itoa(port))
		x.proc, err = startProcess(t, dir, nil, "Xtigervnc",
			fmt.Sprintf(":%d", x.Display), "-rfbport", itoa(port), "-localhost=1", "-nolisten", "tcp",
			"-SecurityTypes", "X509Vnc",
			"-X509Cert", filepath.Join(dir, "server-cert.pem"), "-X509Key", filepath.Join(dir, "server-key.pem"),
			"-PasswordFile", passwdPath, "-geometry", "640x480", "-depth", "24",
		)
		if err != nil {
			t.Fatal(err)
		}
		err = x.proc.waitListening(port)
		if err == nil {
			return x, nil
		}
		lastErr = fmt.Errorf("%w\n%s", err, x.Log())
		if !strings.Contains(x.Log(), "already in use") && !strings.Contains(x.Log(), "Server is already active") {
			break
		}
	}
	return nil, lastErr
}

// Log returns Xtigervnc's output.
func (x *Xtigervnc) Log() string { return x.proc.output() }
