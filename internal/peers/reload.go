package peers

import (
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
