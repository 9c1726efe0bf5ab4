package main

import (
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
	"time"

	"github.com/kvmpki/kvmpki/libvirtconf"
	"github.com/kvmpki/kvmpki/libvirttls"
	"github.com/kvmpki/kvmpki/migration"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// host is one demo hypervisor.
type host struct {
	name, fqdn string
	addr       string // libvirtd's listen address and the host's migration_address
	uuid       string // host_uuid
	forceTLS   bool   // migrate_tls_force=1

	dir     string // work/<name>: state bound over /run, /var/lib/libvirt, /var/log
	root    string // the host's filesystem root for libvirttls
	port    int    // libvirtd TLS port
	creds   *libvirttls.Credentials
	status  *libvirttls.Status
	daemon  *exec.Cmd
	exited  chan struct{}
	changes int
	diff    string // of the last configure
}

// migrationHost describes h for the migration package, from libvirttls's
// detection; the migration stream goes to migrationAddr if set.
func (h *host) migrationHost(migrationAddr string) migration.Host {
	m := migration.HostFromStatus(h.name, h.addr, h.status)
	m.LibvirtPort = h.port
	m.MigrationAddress = migrationAddr
	return m
}

// secure issues h's certificate and secures h's root with libvirttls.
func (h *host) secure(ctx context.Context, ca *rootca.CA, bundle []byte, work string) error {
	h.dir = filepath.Join(work, h.name)
	h.root = filepath.Join(h.dir, "root")
	for _, d := range []string{"run", "lib", "log", "root/etc/libvirt", "root/etc/pki", "root/etc/cloudstack/agent"} {
		if err := os.MkdirAll(filepath.Join(h.dir, d), 0o755); err != nil {
			return err
		}
	}
	// Start from the distribution's configuration when the host has it.
	for _, name := range []string{"libvirtd.conf", "qemu.conf"} {
		data, err := os.ReadFile(filepath.Join("/etc/libvirt", name))
		if errors.Is(err, os.ErrNotExist) {
			data = nil
		} else if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(h.root, "etc", "libvirt", name), data, 0o644); err != nil {
			return err
		}
	}
	port, err := freePort(h.addr)
	if err != nil {
		return err
	}
	h.port = port
	res, err := ca.Issue(ctx, &provider.IssueRequest{
		CommonName: h.fqdn, DNSNames: []string{h.fqdn}, IPAddresses: []net.IP{net.ParseIP(h.addr)},
		Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA, Validity: 24 * time.Hour,
	})
	if err != nil {
		return err
	}
	creds, err := credentialsOf(res, bundle)
	if err != nil {
		return err
	}
	h.creds = creds
	return h.configure(ctx)
}

// configure secures h's root with libvirttls: plan, apply, check.
func (h *host) configure(ctx context.Context) error {
	opts := &libvirttls.Config{
		Root:              h.root,
		RootedConfigPaths: true,
		QEMUGroup:         "root", // QEMU runs as root:root below
		TLSPort:           h.port,
		ListenAddr:        h.addr,
		MigrateTLSForce:   h.forceTLS,
		ExtraLibvirtd: []libvirtconf.Setting{
			{Key: "host_uuid", Value: libvirtconf.StringValue(h.uuid)},
			{Key: "log_outputs", Value: libvirtconf.StringValue("3:file:/var/log/libvirt/libvirtd.log")},
		},
		// A demo host: QEMU as root without confinement, no cgroups or
		// namespaces, no virtlogd; the migration stream on h.addr.
		ExtraQEMU: []libvirtconf.Setting{
			{Key: "user", Value: libvirtconf.StringValue("root")},
			{Key: "group", Value: libvirtconf.StringValue("root")},
			{Key: "security_driver", Value: libvirtconf.StringValue("none")},
			{Key: "namespaces", Value: libvirtconf.StringListValue()},
			{Key: "cgroup_controllers", Value: libvirtconf.StringListValue()},
			{Key: "stdio_handler", Value: libvirtconf.StringValue("file")},
			{Key: "migration_address", Value: libvirtconf.StringValue(h.addr)},
		},
	}
	plan, err := libvirttls.NewPlan(ctx, h.creds, opts)
	if err != nil {
		return err
	}
	h.changes = len(plan.Changes)
	h.diff = plan.Diff()
	if err := plan.Apply(ctx, nil); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(h.dir, "log", "libvirt"), 0o755); err != nil {
		return err
	}
	h.status = libvirttls.CheckHost(ctx, opts, nil)
	if !h.status.Secured {
		return fmt.Errorf("not secured after apply: %v", h.status.Err())
	}
	return nil
}

// start runs h's libvirtd in its own mount namespace, where h's state
// directories are bound over /run, /var/lib/libvirt and /var/log, and h's
// configuration over /etc/libvirt (a privileged libvirtd always reads
// /etc/libvirt/qemu.conf). The network namespace is shared: the daemons
// reach each other over loopback.
func (h *host) start(ctx context.Context, cache string) error {
	script := strings.Join([]string{
		"set -e",
		"mkdir -p /var/lib/libvirt /var/cache/libvirt",
		"mount --bind '" + filepath.Join(h.dir, "run") + "' /run",
		"mount --bind '" + filepath.Join(h.dir, "lib") + "' /var/lib/libvirt",
		"mount --bind '" + filepath.Join(h.dir, "log") + "' /var/log",
		"mount --bind '" + cache + "' /var/cache/libvirt",
		"mount --bind '" + filepath.Join(h.root, "etc", "libvirt") + "' /etc/libvirt",
		"exec libvirtd --listen --config /etc/libvirt/libvirtd.conf --pid-file /run/libvirtd.pid",
	}, "\n")
	out, err := os.Create(filepath.Join(h.dir, "libvirtd.out"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	h.daemon = cmd
	h.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(h.exited) }()

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	addr := net.JoinHostPort(h.addr, strconv.Itoa(h.port))
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-h.exited:
			return fmt.Errorf("libvirtd exited before listening on %s:\n%s", addr, h.daemonLog())
		case <-ctx.Done():
			return fmt.Errorf("libvirtd not listening on %s: %w\n%s", addr, ctx.Err(), h.daemonLog())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends h's libvirtd by its PID: SIGTERM, then SIGKILL.
func (h *host) stop() {
	if h.daemon == nil {
		return
	}
	_ = h.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		_ = h.daemon.Process.Kill()
		<-h.exited
	}
}

func (h *host) daemonLog() string {
	a, _ := os.ReadFile(filepath.Join(h.dir, "libvirtd.out"))
	b, _ := os.ReadFile(filepath.Join(h.dir, "log", "libvirt", "libvirtd.log"))
	return string(a) + string(b)
}

func (h *host) qemuLog() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "log", "libvirt", "qemu", guestName+".log"))
	return h.daemonLog() + string(b)
}

// destroyGuest stops the guest wherever it runs, through libvirt, and
// failing that by the PID libvirt recorded.
func destroyGuest(work, pkiPath string, hosts []*host) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range hosts {
		_, _ = virsh(ctx, work, h.addr, h.port, pkiPath, "destroy", guestName)
		pidFile := filepath.Join(h.dir, "run", "libvirt", "qemu", guestName+".pid")
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// credentialsOf returns an issued certificate as agent credentials.
func credentialsOf(res *provider.IssueResult, bundle []byte) (*libvirttls.Credentials, error) {
	certPEM, err := res.ChainPEM()
	if err != nil {
		return nil, err
	}
	keyPEM, err := res.KeyPEM()
	if err != nil {
		return nil, err
	}
	return &libvirttls.Credentials{CACert: bundle, Cert: certPEM, Key: keyPEM}, nil
}
