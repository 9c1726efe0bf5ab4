package peers

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// QEMUMigrationOptions tunes [StartQEMUMigration].
type QEMUMigrationOptions struct {
	// CredsDir is the tls-creds-x509 directory (ca-cert.pem and, for a
	// destination, server-cert.pem and server-key.pem; for a source,
	// client-cert.pem and client-key.pem), written by the caller, e.g. a
	// libvirttls layout. If empty, QEMU gets no TLS credentials object.
	CredsDir string

	// Incoming makes the QEMU a migration destination (-incoming defer,
	// tls-creds-x509 endpoint=server with verify-peer=on). Otherwise it is
	// a source (endpoint=client).
	Incoming bool

	// Memory are files loaded into guest RAM by generic loader devices,
	// so a test can recognise the guest's memory on the wire.
	Memory []MemoryImage
}

// MemoryImage is a file QEMU loads into guest RAM at Addr.
type MemoryImage struct {
	File string
	Addr uint64
}

// QEMUMigration is a throwaway QEMU (machine pc, TCG, 64 MiB, no devices)
// driven over QMP, one end of a migration. It is stopped when the test
// ends.
type QEMUMigration struct {
	// CredsID is the id of the tls-creds-x509 object, for the tls-creds
	// migration parameter.
	CredsID string

	dir  string
	qmp  *qmpConn
	proc *process
}

// StartQEMUMigration starts qemu-system-x86_64 as a migration source or
// destination and connects to its QMP socket. QEMU checks its credentials
// when it creates the tls-creds-x509 object; if it refuses them, it exits
// and StartQEMUMigration returns an error holding its output. Other setup
// failures fail the test.
func StartQEMUMigration(t testing.TB, opts QEMUMigrationOptions) (*QEMUMigration, error) {
	t.Helper()
	Require(t, "qemu-system-x86_64")
	dir := t.TempDir()
	// A short directory for the QMP socket: UNIX socket paths are limited
	// to 108 bytes.
	sockDir, err := os.MkdirTemp("", "kvmpki-qmp-")
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "qmp.sock")

	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none",
		"-machine", "pc", "-accel", "tcg", "-m", "64",
		"-qmp", "unix:" + qemuOptValue(sock) + ",server=on,wait=off",
	}
	q := &QEMUMigration{dir: dir}
	if opts.CredsDir != "" {
		q.CredsID = "tls0"
		endpoint := "client"
		if opts.Incoming {
			endpoint = "server,verify-peer=on"
		}
		args = append(args, "-object", "tls-creds-x509,id=tls0,endpoint="+endpoint+",dir="+qemuOptValue(opts.CredsDir))
	}
	for _, m := range opts.Memory {
		args = append(args, "-device", fmt.Sprintf("loader,file=%s,addr=%#x", qemuOptValue(m.File), m.Addr))
	}
	if opts.Incoming {
		args = append(args, "-incoming", "defer")
	}
	q.proc, err = startProcess(t, dir, nil, "qemu-system-x86_64", args...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	for {
		conn, err := net.Dial("unix", sock)
		if err == nil {
			q.qmp, err = newQMP(conn)
			if err != nil {
				t.Fatalf("peers: QMP: %v\n%s", err, q.proc.output())
			}
			t.Cleanup(func() { q.qmp.close() })
			return q, nil
		}
		select {
		case <-q.proc.done:
			return nil, fmt.Errorf("peers: qemu-system-x86_64 exited before its QMP socket was ready: %v\n%s", q.proc.waitErr, q.proc.output())
		case <-ctx.Done():
			t.Fatalf("peers: QEMU's QMP socket not ready within %v\n%s", startTimeout, q.proc.output())
		case <-time.After(pollInterval):
		}
	}
}

// QMP runs one QMP command and returns its "return" value, or an error
// holding QEMU's error description.
func (q *QEMUMigration) QMP(command string, args any) (json.RawMessage, error) {
	return q.qmp.execute(command, args)
}

// Log returns what QEMU wrote to stdout and stderr.
func (q *QEMUMigration) Log() string { return q.proc.output() }

// Exited reports whether QEMU has exited.
func (q *QEMUMigration) Exited() bool {
	select {
	case <-q.proc.done:
		return true
	default:
		return false
	}
}

// ReadMemory returns size bytes of guest physical memory at addr, saved
// with QMP pmemsave.
func (q *QEMUMigration) ReadMemory(addr uint64, size int) ([]byte, error) {
	path := filepath.Join(q.dir, fmt.Sprintf("mem-%x-%d.bin", addr, size))
	if _, err := q.QMP("pmemsave", map[string]any{"val": addr, "size": size, "filename": path}); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// MigrationStatus is the part of query-migrate a test needs.
type MigrationStatus struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
	// TotalTime is QEMU's own measure of the migration, in milliseconds.
	TotalTime int64 `json:"total-time"`
}

// WaitMigration polls query-migrate until the migration is completed,
// failed or cancelled, and returns the final status. A failure is
// returned with its error description, which QEMU records just after the
// state.
func (q *QEMUMigration) WaitMigration(ctx context.Context) (MigrationStatus, error) {
	var firstFailed time.Time
	for {
		raw, err := q.QMP("query-migrate", nil)
		if err != nil {
			return MigrationStatus{}, err
		}
		var st MigrationStatus
		if err := json.Unmarshal(raw, &st); err != nil {
			return MigrationStatus{}, fmt.Errorf("peers: query-migrate: %w", err)
		}
		switch st.Status {
		case "failed":
			// QEMU 7.2 sets the failed state before it records the
			// error (migrate_fd_error): give the description a moment.
			if st.ErrorDesc == "" && time.Since(failedAt(&firstFailed)) < time.Second {
				break
			}
			return st, nil
		case "completed", "cancelled":
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("peers: migration still %q: %w", st.Status, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// failedAt returns *t, set to now on first use.
func failedAt(t *time.Time) time.Time {
	if t.IsZero() {
		*t = time.Now()
	}
	return *t
}

// qmpConn is a minimal QMP client: one command at a time, events skipped.
type qmpConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func newQMP(conn net.Conn) (*qmpConn, error) {
	c := &qmpConn{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := c.read(&greeting); err != nil || greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("no QMP greeting: %v", err)
	}
	if _, err := c.execute("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *qmpConn) close() { _ = c.conn.Close() }

// read decodes the next line of QMP output into v.
func (c *qmpConn) read(v any) error {
	_ = c.conn.SetReadDeadline(time.Now().Add(runTimeout))
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

func (c *qmpConn) execute(command string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("peers: QMP %s: %w", command, err)
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := c.read(&resp); err != nil {
			return nil, fmt.Errorf("peers: QMP %s: %w", command, err)
		}
		switch {
		case resp.Event != "":
			continue
		case resp.Error != nil:
			return nil, fmt.Errorf("peers: QMP %s: %s: %s", command, resp.Error.Class, resp.Error.Desc)
		case resp.Return != nil:
			return resp.Return, nil
		}
		return nil, errors.New("peers: QMP " + command + ": reply without return or error: " + strings.TrimSpace(string(b)))
	}
}
