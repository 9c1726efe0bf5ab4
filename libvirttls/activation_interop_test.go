package libvirttls

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
)

// TestLibvirtdServesActivatedTCPSocket shows why a secured host must
// have libvirtd-tcp.socket stopped and disabled, not only listen_tcp = 0
// (issue 11, item 1): a libvirtd handed a TCP socket the way systemd
// hands libvirtd-tcp.socket (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES)
// serves it with auth_tcp, here libvirt's test driver to an
// unauthenticated plain-TCP virsh, although its libvirtd.conf says
// listen_tcp = 0 and it runs without --listen.
//
// The daemon runs in a private mount namespace with a tmpfs on /run, so
// its UNIX sockets (whose unix_sock_dir activation ignores) stay off the
// host's /run/libvirt, and without driver modules (LIBVIRT_DRIVER_DIR is
// empty), so it needs no libvirt-qemu user.
func TestLibvirtdServesActivatedTCPSocket(t *testing.T) {
	peers.Require(t, "libvirtd", "virsh", "unshare")
	if os.Geteuid() != 0 {
		t.Skip("a mount namespace for the daemon's /run needs root")
	}
	dir := t.TempDir()
	drivers := filepath.Join(dir, "drivers")
	require.NoError(t, os.Mkdir(drivers, 0o700))
	logPath := filepath.Join(dir, "libvirtd.log")
	conf := filepath.Join(dir, "libvirtd.conf")
	require.NoError(t, os.WriteFile(conf, []byte(
		"listen_tls = 0\nlisten_tcp = 0\nauth_tcp = \"none\"\nlog_outputs = \"3:file:"+logPath+"\"\n"), 0o600))

	// The socket systemd would have bound for libvirtd-tcp.socket.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	fd, err := l.(*net.TCPListener).File()
	require.NoError(t, err)
	require.NoError(t, l.Close()) // fd, a dup, keeps listening
	t.Cleanup(func() { _ = fd.Close() })

	// LISTEN_PID must be the daemon's PID: sh exports its own and execs
	// libvirtd in its place (unshare without --fork keeps the PID too).
	script := `mount -t tmpfs tmpfs /run || exit 1
export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=libvirtd-tcp.socket
exec libvirtd --config "$1" --pid-file "$2"`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", conf, filepath.Join(dir, "libvirtd.pid"))
	cmd.ExtraFiles = []*os.File{fd} // fd 3, SD_LISTEN_FDS_START
	cmd.Env = append(os.Environ(), "LIBVIRT_DRIVER_DIR="+drivers)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by PID: the process this test started
		<-exited
	})

	uri := "test+tcp://127.0.0.1:" + strconv.Itoa(port) + "/default"
	var virsh []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := exec.CommandContext(t.Context(), "virsh", "-c", uri, "list", "--all")
		v.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
		virsh, err = v.CombinedOutput()
		if err == nil || time.Now().After(deadline) {
			break
		}
		select {
		case werr := <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("libvirtd exited (%v):\n%s\n%s", werr, out.String(), log)
		case <-time.After(200 * time.Millisecond):
		}
	}
	log, _ := os.ReadFile(logPath)
	require.NoError(t, err, "virsh: %s\nlibvirtd: %s\n%s", virsh, out.String(), log)
	assert.Contains(t, string(virsh), "test", "an unauthenticated plain-TCP client drives libvirtd, listen_tcp = 0 notwithstanding")
	t.Logf("libvirtd with listen_tcp = 0, handed libvirtd-tcp.socket, served %s without credentials:\n%s", uri, virsh)
}
