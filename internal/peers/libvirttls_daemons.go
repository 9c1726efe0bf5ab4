package peers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// LibvirtdConfig is what a test renders into the libvirtd.conf of
// [StartLibvirtdFromConfig]: the daemon must listen with TLS on
// 127.0.0.1:Port, keep its UNIX sockets in SockDir and log (level 3 or
// lower) to LogPath, or the helper cannot wait for it and report its
// reasons.
type LibvirtdConfig struct {
	Port    int
	SockDir string
	LogPath string
}

// StartLibvirtdFromConfig starts libvirtd --listen with a libvirtd.conf
// the caller renders: render gets the port, socket directory and log path
// to put in it, and returns the path of the file it wrote. Everything else
// (TLS files, crl_file, tls_allowed_dn_list) is the caller's. The daemon
// runs as in [StartLibvirtd] (test driver only, state in temporary
// directories) and StartLibvirtdFromConfig returns once it listens; a
// daemon that exits at start (for example refusing its own certificate)
// is returned as an error holding its log.
func StartLibvirtdFromConfig(t testing.TB, render func(LibvirtdConfig) (string, error)) (*Libvirtd, error) {
	t.Helper()
	Require(t, "libvirtd")
	return startLibvirtd(t, render, func(confPath, pidPath string) (string, []string) {
		return "libvirtd", []string{"--listen", "--config", confPath, "--pid-file", pidPath}
	})
}

// startLibvirtd runs the daemon that command returns for a rendered
// configuration and pid file path; the process it starts must become
// libvirtd under the same PID (exec), which waitListening checks.
func startLibvirtd(t testing.TB, render func(LibvirtdConfig) (string, error), command func(confPath, pidPath string) (string, []string)) (*Libvirtd, error) {
	t.Helper()
	dir := t.TempDir()
	driverDir := filepath.Join(dir, "drivers")
	for _, d := range []string{driverDir, filepath.Join(dir, "xdg")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("peers: %v", err)
		}
	}
	// UNIX socket paths are limited to 108 bytes; t.TempDir paths grow
	// with the test name, so the sockets get a short directory of their
	// own. Cleanups run last-in first-out: this removal runs after the
	// daemon has stopped.
	sockDir, err := os.MkdirTemp("", "kvmpki-libvirtd-")
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	env := []string{
		"LIBVIRT_DRIVER_DIR=" + driverDir,
		// Used only when not root: keep a session daemon out of $HOME.
		"HOME=" + dir,
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "xdg"),
		"XDG_CACHE_HOME=" + filepath.Join(dir, "xdg"),
		"XDG_RUNTIME_DIR=" + sockDir,
	}
	d := &Libvirtd{dir: dir}
	var lastErr error
	for attempt := range startAttempts {
		port, err := freePort(1024)
		if err != nil {
			t.Fatal(err)
		}
		d.Port = port
		d.logPath = filepath.Join(dir, fmt.Sprintf("libvirtd-%d.log", attempt))
		confPath, err := render(LibvirtdConfig{Port: port, SockDir: sockDir, LogPath: d.logPath})
		if err != nil {
			return nil, fmt.Errorf("peers: rendering libvirtd.conf: %w", err)
		}
		bin, args := command(confPath, filepath.Join(sockDir, fmt.Sprintf("libvirtd-%d.pid", attempt)))
		d.proc, err = startProcess(t, dir, env, bin, args...)
		if err != nil {
			t.Fatal(err)
		}
		err = d.proc.waitListening(port)
		if err == nil {
			return d, nil
		}
		lastErr = fmt.Errorf("%w\n%s", err, d.Log())
		if !strings.Contains(d.Log(), "Address already in use") {
			break
		}
		lastErr = fmt.Errorf("%w: %w", errPortInUse, lastErr)
	}
	return nil, lastErr
}

// StartQEMUVNCFromDir is [StartQEMUVNC] with a credentials directory the
// caller laid out (ca-cert.pem, server-cert.pem, server-key.pem and
// optionally ca-crl.pem and dh-params.pem), used as is: the test proves
// that QEMU accepts that directory. Without dh-params.pem QEMU 7.2
// generates DH parameters at start, which can take seconds.
func StartQEMUVNCFromDir(t testing.TB, credsDir string, opts QEMUVNCOptions) (*QEMUVNC, error) {
	t.Helper()
	Require(t, "qemu-system-x86_64")
	return startQEMUVNC(t, t.TempDir(), credsDir, "", opts)
}

// StartLibvirtdOnHostPaths is [StartLibvirtdFromConfig] for a
// libvirtd.conf that names host paths (/etc/pki/...): the daemon runs in a
// private mount namespace where pkiDir, laid out by the test under a
// temporary root, is bind-mounted on /etc/pki, so that it reads the files
// at the paths a real host would use while the real /etc stays untouched.
// (/etc/pki need not exist: /etc is first overlaid with a stub that holds
// an empty pki directory as mount point. The bind mount, unlike an
// overlay, shows files renamed into pkiDir later, as a reload needs.) It
// needs root and overlayfs; where the mounts are not permitted the test is
// skipped, or failed under KVMPKI_INTEROP=require.
func StartLibvirtdOnHostPaths(t testing.TB, pkiDir string, render func(LibvirtdConfig) (string, error)) (*Libvirtd, error) {
	t.Helper()
	Require(t, "libvirtd", "unshare")
	stub := t.TempDir()
	if err := os.Mkdir(filepath.Join(stub, "pki"), 0o755); err != nil {
		t.Fatalf("peers: %v", err)
	}
	for _, d := range []string{stub, pkiDir} {
		if strings.ContainsAny(d, ":,\\") {
			t.Fatalf("peers: mount source %q holds ':', ',' or '\\'", d)
		}
	}
	const mounts = `mount -t overlay overlay -o lowerdir="$1":/etc /etc && mount --bind "$2" /etc/pki`
	if out, err := runTool(t, stub, nil, "unshare", "-m", "--propagation", "private",
		"sh", "-c", mounts, "sh", stub, filepath.Join(stub, "pki")); err != nil {
		unavailable(t, "cannot mount on /etc in a private mount namespace: "+strings.TrimSpace(out))
	}
	return startLibvirtd(t, render, func(confPath, pidPath string) (string, []string) {
		return "unshare", []string{"-m", "--propagation", "private", "sh", "-c",
			mounts + ` && exec libvirtd --listen --config "$3" --pid-file "$4"`,
			"sh", stub, pkiDir, confPath, pidPath}
	})
}
