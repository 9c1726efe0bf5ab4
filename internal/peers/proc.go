package peers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// startTimeout bounds how long a daemon may take to listen.
	startTimeout = 30 * time.Second
	// stopTimeout bounds how long a daemon may take to exit on SIGTERM
	// before it is killed.
	stopTimeout = 10 * time.Second
	// runTimeout bounds one run of a command-line peer.
	runTimeout = 60 * time.Second
	// pollInterval is the readiness polling period.
	pollInterval = 20 * time.Millisecond
	// startAttempts is how often a daemon start is tried when its port was
	// taken between choosing and binding it.
	startAttempts = 3
)

// errPortInUse marks a start that failed because another process bound
// the chosen port first.
var errPortInUse = errors.New("peers: port already in use")

// process is a daemon started by this package, stopped by its own PID when
// the test ends.
type process struct {
	name    string
	cmd     *exec.Cmd
	outPath string        // the daemon's stdout and stderr
	done    chan struct{} // closed when the process has exited
	waitErr error         // the result of Wait, set before done is closed
}

// startProcess starts bin with args and env (added to the environment),
// sending its output to a file in dir, and registers a cleanup on t that
// stops it.
func startProcess(t testing.TB, dir string, env []string, bin string, args ...string) (*process, error) {
	t.Helper()
	out, err := os.CreateTemp(dir, filepath.Base(bin)+"-*.out")
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a ^C at the terminal goes to go test only,
		// which then stops the daemon through the cleanup.
		Setpgid: true,
		// If the test binary dies without running its cleanups (a
		// panic, a -timeout), the kernel kills the daemon.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("peers: starting %s: %w", bin, err)
	}
	p := &process{name: filepath.Base(bin), cmd: cmd, outPath: out.Name(), done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p, nil
}

// stop ends the process by its PID: SIGTERM, then SIGKILL after
// stopTimeout.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// output returns what the process wrote to stdout and stderr so far.
func (p *process) output() string {
	b, err := os.ReadFile(p.outPath)
	if err != nil {
		return "(output unavailable: " + err.Error() + ")"
	}
	return string(b)
}

// waitListening waits until the process listens on 127.0.0.1:port. It
// fails early when the process exits.
func (p *process) waitListening(port int) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if ok, err := listensOn(p.cmd.Process.Pid, port); err != nil {
			return err
		} else if ok {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("peers: %s exited before listening on 127.0.0.1:%d: %v", p.name, port, p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("peers: %s did not listen on 127.0.0.1:%d within %v", p.name, port, startTimeout)
		case <-tick.C:
		}
	}
}

// listensOn reports whether process pid owns a TCP socket listening on
// 127.0.0.1:port. Checking the owner, not just the port, means that
// another process that grabbed the port is never mistaken for the daemon.
func listensOn(pid, port int) (bool, error) {
	inodes, err := listeningInodes(port)
	if err != nil || len(inodes) == 0 {
		return false, err
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		// The process may be exiting; the caller sees that on done.
		return false, nil
	}
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
			return true, nil
		}
	}
	return false, nil
}

// listeningInodes returns the socket inodes listening on 127.0.0.1:port,
// from /proc/net/tcp.
func listeningInodes(port int) (map[string]bool, error) {
	fh, err := os.Open("/proc/net/tcp")
	if err != nil {
		return nil, fmt.Errorf("peers: readiness check needs Linux /proc: %w", err)
	}
	defer fh.Close()
	// /proc/net/tcp prints the IPv4 address as a host-order (little
	// endian) word and the port big-endian: 127.0.0.1:port.
	want := fmt.Sprintf("0100007F:%04X", port)
	const stateListen = "0A"
	inodes := map[string]bool{}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 10 && f[1] == want && f[3] == stateListen {
			inodes[f[9]] = true
		}
	}
	return inodes, sc.Err()
}

// freePort returns a TCP port above min that was free on 127.0.0.1 a
// moment ago. The kernel picks it from the ephemeral range, which keeps it
// away from well-known daemon ports.
func freePort(min int) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("peers: finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("peers: finding a free port: %w", err)
		}
		if port > min {
			return port, nil
		}
	}
	return 0, fmt.Errorf("peers: no free port above %d", min)
}

// runTool runs a command-line peer to completion and returns its combined
// output. A non-zero exit is returned as an error holding that output.
func runTool(t testing.TB, dir string, env []string, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("peers: %s %s: %w\n%s", bin, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// itoa is strconv.Itoa, short for command lines.
func itoa(i int) string { return strconv.Itoa(i) }
