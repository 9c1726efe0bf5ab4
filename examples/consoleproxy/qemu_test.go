package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
)

// guest is a QEMU PC with a standard VGA card, stopped before its first
// instruction (-S), so that its screen is QEMU's fixed "Guest has not
// initialized the display (yet)." at 640x480, served by a VNC server with
// tls-creds-x509 (verify-peer=yes) and a VNC password (VeNCrypt
// X509Vnc), and with a QMP socket for screendump. peers.StartQEMUVNC
// runs -machine none, which has no console to dump.
type guest struct {
	Addr string
	dir  string
	qmp  string
	cmd  *exec.Cmd
	out  *strings.Builder
}

// startGuest starts QEMU with the server's CA, certificate and key and
// the VNC password, written with mode 0600 under t.TempDir; the password
// reaches QEMU through a secret object read from a file.
func startGuest(t *testing.T, caPEM, certPEM, keyPEM []byte, password string) *guest {
	t.Helper()
	peers.Require(t, "qemu-system-x86_64")
	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	require.NoError(t, os.Mkdir(creds, 0o700))
	for name, data := range map[string][]byte{"ca-cert.pem": caPEM, "server-cert.pem": certPEM, "server-key.pem": keyPEM} {
		require.NoError(t, os.WriteFile(filepath.Join(creds, name), data, 0o600))
	}
	// Fixed DH parameters spare QEMU generating them at start.
	if _, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command("openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048").Output()
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(creds, "dh-params.pem"), out, 0o600))
	}
	pwFile := filepath.Join(dir, "vnc-password")
	require.NoError(t, os.WriteFile(pwFile, []byte(password), 0o600))

	g := &guest{dir: dir, qmp: filepath.Join(dir, "qmp.sock")}
	for range 5 {
		display := 100 + rand.IntN(800)
		port := 5900 + display
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
			continue
		} else {
			ln.Close()
		}
		g.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		g.out = new(strings.Builder)
		g.cmd = exec.Command("qemu-system-x86_64",
			"-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc", "-vga", "std", "-S",
			"-object", "tls-creds-x509,id=tls0,endpoint=server,verify-peer=yes,dir="+creds,
			"-object", "secret,id=vncpw,format=raw,file="+pwFile,
			"-vnc", fmt.Sprintf("127.0.0.1:%d,tls-creds=tls0,password-secret=vncpw", display),
			"-qmp", "unix:"+g.qmp+",server=on,wait=off")
		g.cmd.Dir = dir
		g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
		g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		require.NoError(t, g.cmd.Start())
		done := make(chan struct{})
		go func() { _ = g.cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			_ = g.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = g.cmd.Process.Kill()
				<-done
			}
		})
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				deadline = time.Time{}
				continue
			default:
			}
			if _, err := os.Stat(g.qmp); err == nil && listening(port) {
				return g
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(g.out.String(), "Address already in use") {
			break
		}
	}
	t.Fatalf("QEMU did not start:\n%s", g.out)
	return nil
}

// listening reports whether something listens on the loopback TCP port,
// from /proc/net/tcp, without connecting (a connection would be a VNC
// client to QEMU).
func listening(port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf(":%04X", port)
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[1], want) && f[3] == "0A" {
			return true
		}
	}
	return false
}

// Screendump asks QEMU for its own picture of the guest's screen (QMP
// screendump, PNG).
func (g *guest) Screendump(t *testing.T) image.Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", g.qmp)
	require.NoError(t, err)
	defer conn.Close()
	dl, _ := ctx.Deadline()
	require.NoError(t, conn.SetDeadline(dl))
	r := bufio.NewReader(conn)
	dec := json.NewDecoder(r)
	var greeting map[string]any
	require.NoError(t, dec.Decode(&greeting))
	path := filepath.Join(g.dir, fmt.Sprintf("screendump-%d.png", time.Now().UnixNano()))
	for _, cmd := range []map[string]any{
		{"execute": "qmp_capabilities"},
		{"execute": "screendump", "arguments": map[string]any{"filename": path, "format": "png"}},
	} {
		require.NoError(t, json.NewEncoder(conn).Encode(cmd))
		for {
			var resp struct {
				Return json.RawMessage `json:"return"`
				Error  *struct{ Desc string }
				Event  string `json:"event"`
			}
			require.NoError(t, dec.Decode(&resp))
			if resp.Event != "" {
				continue
			}
			require.Nil(t, resp.Error, "QMP %v", cmd)
			break
		}
	}
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	return img
}
