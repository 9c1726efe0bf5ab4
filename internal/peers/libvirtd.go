package peers

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// LibvirtdOptions tunes [StartLibvirtd]. The zero value accepts any
// client certificate that verifies against the CA.
type LibvirtdOptions struct {
	// AllowedDNs is written as tls_allowed_dn_list: glob patterns that a
	// client's DN must match, in certificate RDN order ("O=Test,CN=c1").
	// If AllowedDNs is nil the list is unset and any DN is allowed; an
	// empty non-nil slice rejects every client, as libvirt does.
	AllowedDNs []string
}

// Libvirtd is a throwaway libvirtd serving TLS on 127.0.0.1, started by
// [StartLibvirtd] and stopped when the test ends.
type Libvirtd struct {
	// Port is the TLS port on 127.0.0.1.
	Port int

	dir     string // state directory
	logPath string // libvirtd's log_outputs file
	proc    *process
}

// StartLibvirtd starts libvirtd --listen with listen_tls on 127.0.0.1 and
// a free port, using server.CACert as ca_file, server.Cert as cert_file,
// server.Key as key_file and, when set, server.CRL as crl_file. It returns
// once the daemon listens.
//
// libvirtd checks its own certificate and CA at start. If it refuses them
// (for example "Certificate … usage does not permit key encipherment" for
// an ECDSA leaf with a critical digitalSignature-only keyUsage), the
// daemon exits and StartLibvirtd returns an error holding its log. Other
// setup failures fail the test.
//
// The daemon loads no hypervisor driver modules (LIBVIRT_DRIVER_DIR points
// at an empty directory): the test driver built into libvirt.so answers
// test+tls:// URIs, which is all the TLS checks need. Without the QEMU,
// network and storage drivers the daemon needs no libvirt-qemu user, does
// not write /var/lib/libvirt or /var/cache/libvirt, and does not take the
// drivers' lock files under /run/libvirt, so several daemons can run at
// once. Its sockets, pid file and log live in temporary directories.
func StartLibvirtd(t testing.TB, server PKI, opts LibvirtdOptions) (*Libvirtd, error) {
	t.Helper()
	Require(t, "libvirtd")
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	if err := os.Mkdir(pkiDir, 0o700); err != nil {
		t.Fatalf("peers: %v", err)
	}
	if err := server.writeLayout(t, pkiDir, libvirtServerLayout); err != nil {
		return nil, err
	}
	attempt := 0
	return StartLibvirtdFromConfig(t, func(c LibvirtdConfig) (string, error) {
		conf, err := libvirtdConf(pkiDir, c, len(server.CRL) > 0, opts)
		if err != nil {
			t.Fatal(err)
		}
		confPath := filepath.Join(dir, fmt.Sprintf("libvirtd-%d.conf", attempt))
		attempt++
		if err := writeNew(confPath, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		return confPath, nil
	})
}

// libvirtdConf renders libvirtd.conf.
func libvirtdConf(pkiDir string, c LibvirtdConfig, crl bool, opts LibvirtdOptions) (string, error) {
	var b strings.Builder
	var err error
	set := func(key, value string) {
		// libvirt's config strings have no escapes.
		if strings.ContainsAny(value, "\"\n") {
			err = errors.Join(err, fmt.Errorf("peers: libvirtd.conf value for %s contains a quote or newline", key))
		}
		fmt.Fprintf(&b, "%s = \"%s\"\n", key, value)
	}
	b.WriteString("listen_tls = 1\nlisten_tcp = 0\n")
	set("listen_addr", "127.0.0.1")
	set("tls_port", itoa(c.Port))
	set("auth_tls", "none")
	set("ca_file", filepath.Join(pkiDir, "cacert.pem"))
	set("cert_file", filepath.Join(pkiDir, "servercert.pem"))
	set("key_file", filepath.Join(pkiDir, "serverkey.pem"))
	if crl {
		set("crl_file", filepath.Join(pkiDir, "cacrl.pem"))
	}
	set("unix_sock_dir", c.SockDir)
	// Level 3: warnings and errors, which is where certificate problems go.
	set("log_outputs", "3:file:"+c.LogPath)
	if opts.AllowedDNs != nil {
		b.WriteString("tls_allowed_dn_list = [")
		for i, dn := range opts.AllowedDNs {
			if strings.ContainsAny(dn, "\"\n") {
				err = errors.Join(err, fmt.Errorf("peers: allowed DN %q contains a quote or newline", dn))
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(`"` + dn + `"`)
		}
		b.WriteString("]\n")
	}
	return b.String(), err
}

// Log returns libvirtd's log (warnings and errors) followed by what it
// wrote to stdout and stderr.
func (d *Libvirtd) Log() string {
	b, err := os.ReadFile(d.logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "(log unavailable: " + err.Error() + ")"
	}
	out := d.proc.output()
	if strings.TrimSpace(out) == "" {
		return string(b)
	}
	return string(b) + "-- libvirtd stdout/stderr --\n" + out
}

// logSize returns the current size of libvirtd's log file.
func (d *Libvirtd) logSize() int {
	fi, err := os.Stat(d.logPath)
	if err != nil {
		return 0
	}
	return int(fi.Size())
}

// Connect runs `virsh -c 'test+tls://HOST:PORT/default?pkipath=DIR' list
// --all` against the daemon and returns an error if the connection fails.
// DIR holds client.CACert as cacert.pem, client.Cert as clientcert.pem,
// client.Key as clientkey.pem and client.CRL as cacrl.pem; Cert and Key
// may be empty, to connect without a client certificate.
//
// host is the name virsh dials and checks the server certificate against,
// such as "localhost" or "127.0.0.1". The error holds virsh's output and
// the lines libvirtd logged during the attempt, which carry the server's
// reason, e.g. "Client's Distinguished Name is not on the list of allowed
// clients".
func (d *Libvirtd) Connect(t testing.TB, client PKI, host string) error {
	t.Helper()
	Require(t, "virsh")
	// pkipath goes into a URI: a t.TempDir path could hold '#' or ','
	// from the test name, so use a short directory of known characters.
	dir, err := os.MkdirTemp("", "kvmpki-virsh-")
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	defer os.RemoveAll(dir)
	if err := client.writeLayout(t, dir, libvirtClientLayout); err != nil {
		return err
	}
	uri := "test+tls://" + net.JoinHostPort(host, itoa(d.Port)) + "/default?pkipath=" + dir
	before := d.logSize()
	out, err := runTool(t, dir, []string{"HOME=" + dir, "XDG_CACHE_HOME=" + dir, "XDG_CONFIG_HOME=" + dir},
		"virsh", "-c", uri, "list", "--all")
	if err != nil {
		return fmt.Errorf("%w\n-- libvirtd log during the attempt --\n%s", err, d.logSince(before))
	}
	if !strings.Contains(out, "test") {
		return fmt.Errorf("peers: virsh list did not show the test driver's domain:\n%s", out)
	}
	return nil
}

// logSince returns the log written after offset off.
func (d *Libvirtd) logSince(off int) string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return "(log unavailable: " + err.Error() + ")"
	}
	if off > len(b) {
		off = 0
	}
	return string(b[off:])
}
