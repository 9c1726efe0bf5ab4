package peers

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Support for reload tests: a reload must leave the daemon running under
// the same process, which these accessors let a test check.

// qmpSocketPath returns a fresh path for a QMP socket in a short
// directory of its own (UNIX socket paths are limited to 108 bytes),
// removed when the test ends.
func qmpSocketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kvmpki-qmp-")
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "qmp.sock")
}

// PID returns the process ID of QEMU.
func (q *QEMUVNC) PID() int { return q.proc.cmd.Process.Pid }

// Exited reports whether QEMU has exited.
func (q *QEMUVNC) Exited() bool { return q.proc.exited() }

// PID returns the process ID of libvirtd (the daemon itself, also when it
// was started through unshare, which execs it).
func (d *Libvirtd) PID() int { return d.proc.cmd.Process.Pid }

// Exited reports whether libvirtd has exited.
func (d *Libvirtd) Exited() bool { return d.proc.exited() }

// PID returns the process ID of QEMU.
func (q *QEMUMigration) PID() int { return q.proc.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ProbeVNC is [QEMUVNC.Probe] for a VNC server the test did not start
// with this package, such as a guest's display started by libvirt, at
// addr ("127.0.0.1:5900"). Its error does not hold QEMU's log.
func ProbeVNC(t testing.TB, addr string, cfg *tls.Config) error {
	t.Helper()
	if cfg == nil {
		return errors.New("peers: ProbeVNC needs a tls.Config")
	}
	ctx, cancel := context.WithTimeout(t.Context(), probeTimeout)
	defer cancel()
	return probeVNC(ctx, addr, probeConfig(cfg))
}

// WriteDHParams writes the fixed ffdhe2048 DH parameters as dh-params.pem
// in a tls-creds-x509 directory, which spares QEMU generating them each
// time it loads the directory (at start, and at every display-reload).
func WriteDHParams(t testing.TB, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "dh-params.pem"), []byte(ffdhe2048), 0o644); err != nil {
		t.Fatalf("peers: %v", err)
	}
}
