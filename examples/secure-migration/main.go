// Command secure-migration is the whole secure-migration story on one
// machine, as root: it creates a CA, secures two libvirt hosts with
// libvirttls, starts a libvirtd for each (separate mount namespaces,
// distinct host_uuid, loopback addresses 127.0.0.2 and 127.0.0.3), boots a
// small TCG guest whose RAM holds a random marker page on the first, and
// live-migrates it to the second with the URI, flags and TLS destination
// of a migration plan, through a tap that shows what crossed the wire: a
// TLS stream without the marker. It also shows the destination refusing
// CloudStack's flags (no VIR_MIGRATE_TLS, migrate_tls_force=1), the
// cleartext stream those flags produce towards a host that allows them,
// a tunnelled peer-to-peer migration (the documented alternative), and
// the refusal to plan a migration from a secured to an unsecured host.
//
// Usage:
//
//	secure-migration [-work DIR] [-keep] [-timeout 3m]
//
// It needs root, unshare and mount (util-linux), libvirtd
// (libvirt-daemon, libvirt-daemon-driver-qemu), virsh (libvirt-clients),
// qemu-system-x86_64 (qemu-system-x86) and the libvirt-qemu user and
// group. It exits non-zero on any failure.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kvmpki/kvmpki/libvirttls"
	"github.com/kvmpki/kvmpki/migration"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

func main() {
	var opts options
	flag.StringVar(&opts.work, "work", "", "directory for the hosts' roots, state and logs (default: a temporary directory, removed at the end)")
	flag.BoolVar(&opts.keep, "keep", false, "keep the work directory")
	flag.DurationVar(&opts.timeout, "timeout", 3*time.Minute, "bound on the whole run")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), opts.timeout)
	defer cancel()
	if err := run(ctx, os.Stdout, opts); err != nil {
		fmt.Fprintln(os.Stderr, "secure-migration:", err)
		os.Exit(1)
	}
}

type options struct {
	work    string
	keep    bool
	timeout time.Duration
}

// Binaries the run needs, with their Debian packages.
var requiredBinaries = [][2]string{
	{"libvirtd", "libvirt-daemon"},
	{"virsh", "libvirt-clients"},
	{"qemu-system-x86_64", "qemu-system-x86"},
	{"unshare", "util-linux"},
	{"mount", "mount"},
}

// errUnavailable marks a machine that cannot run the demo (not root, a
// binary missing); the test skips on it.
var errUnavailable = errors.New("secure-migration: cannot run here")

// checkAvailable returns an error wrapping errUnavailable when the demo
// cannot run on this machine.
func checkAvailable() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (two privileged libvirtd daemons in their own mount namespaces)", errUnavailable)
	}
	for _, b := range requiredBinaries {
		if _, err := exec.LookPath(b[0]); err != nil {
			return fmt.Errorf("%w: %s not found in PATH (Debian package %s)", errUnavailable, b[0], b[1])
		}
	}
	return nil
}

const (
	guestName  = "kvmpki-demo"
	markerAddr = 0x2000000 // 32 MiB, in a 64 MiB guest
)

func run(ctx context.Context, out io.Writer, opts options) (err error) {
	if err := checkAvailable(); err != nil {
		return err
	}
	work := opts.work
	if work == "" {
		if work, err = os.MkdirTemp("", "kvmpki-secure-migration-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	if work, err = filepath.Abs(work); err != nil {
		return err
	}
	if strings.ContainsAny(work, "'\"\n ,") {
		return fmt.Errorf("work directory %q holds a quote, space, comma or newline", work)
	}
	if !opts.keep {
		defer os.RemoveAll(work)
	}

	// The CA. Its key stays in memory for the demo; a platform keeps it
	// in an HSM or encrypted at rest (rootca.Create with a password, on a persistent store).
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ca, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{
		Options: rootca.Options{Signer: caKey},
		Subject: pkix.Name{CommonName: "kvmpki demo CA", Organization: []string{"kvmpki"}},
	})
	if err != nil {
		return err
	}
	defer ca.Close()
	bundle, err := provider.CABundle(ctx, ca)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "CA:            %s\n", ca.Certificate().Subject)

	hosts := []*host{
		{name: "kvm1", fqdn: "kvm1.example.org", addr: "127.0.0.2", uuid: "6b1f6e2a-6f1c-4d0a-9c1e-000000000001"},
		{name: "kvm2", fqdn: "kvm2.example.org", addr: "127.0.0.3", uuid: "6b1f6e2a-6f1c-4d0a-9c1e-000000000002"},
	}
	kvm1, kvm2 := hosts[0], hosts[1]
	cache := filepath.Join(work, "cache")
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return err
	}
	for _, h := range hosts {
		if err := h.secure(ctx, ca, bundle, work); err != nil {
			return fmt.Errorf("%s: %w", h.name, err)
		}
		defer h.stop()
		if err := h.start(ctx, cache); err != nil {
			return fmt.Errorf("%s: %w", h.name, err)
		}
		force := ""
		if h.forceTLS {
			force = ", migrate_tls_force=1"
		}
		fmt.Fprintf(out, "%-14s secured by libvirttls (%d changes%s), %s, libvirtd TLS on %s\n",
			h.name+":", h.changes, force, h.status, net.JoinHostPort(h.addr, strconv.Itoa(h.port)))
	}

	// The admin's libvirt client credentials: kvm1's host certificate,
	// which carries clientAuth.
	pkiPath := filepath.Join(work, "client")
	if err := libvirttls.WritePKIPath(ctx, pkiPath, kvm1.creds); err != nil {
		return err
	}
	d := &demo{work: work, pkiPath: pkiPath}

	// The guest: 64 MiB, TCG, no disk; a loader device puts a random
	// marker page into its RAM, so the wire can be searched for it.
	d.marker = make([]byte, 32)
	if _, err := rand.Read(d.marker); err != nil {
		return err
	}
	markerFile := filepath.Join(work, "marker.bin")
	if err := os.WriteFile(markerFile, bytes.Repeat(d.marker, 4096/len(d.marker)), 0o644); err != nil {
		return err
	}
	domXML := filepath.Join(work, "guest.xml")
	if err := os.WriteFile(domXML, []byte(guestXML(markerFile)), 0o644); err != nil {
		return err
	}
	if _, err := virsh(ctx, work, kvm1.addr, kvm1.port, pkiPath, "create", domXML); err != nil {
		return err
	}
	defer destroyGuest(work, pkiPath, hosts)
	fmt.Fprintf(out, "guest:         %s running on kvm1 (64 MiB, TCG, marker page at %#x)\n", guestName, markerAddr)

	pre, err := migration.LoadPreflightOptions(ctx, pkiPath)
	if err != nil {
		return err
	}
	if err := migration.Preflight(ctx, kvm2.migrationHost(""), pre); err != nil {
		return err
	}
	fmt.Fprintf(out, "preflight:     kvm1 -> kvm2: kvm2's libvirtd accepts kvm1's certificate\n")

	// What CloudStack asks for: qemu+tls without VIR_MIGRATE_TLS. The
	// guest's memory crosses the wire in clear. The migration stream goes
	// through a tap on 127.0.0.4 in front of kvm2's migration_address.
	r, err := d.migrate(ctx, kvm1, kvm2, "127.0.0.4", false)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, kvm2.qemuLog())
	}
	fmt.Fprintf(out, "cleartext:     kvm1 -> kvm2 with CloudStack's flags (%v): %s\n", r.plan.Flags, r)
	if r.hits == 0 || r.tls {
		return errors.New("the cleartext run did not show the marker: the tap is blind")
	}

	// The plan: native TLS. kvm1's certificate does not carry the tap's
	// address 127.0.0.5, so the plan names the TLS destination from the
	// certificate.
	r, err = d.migrate(ctx, kvm2, kvm1, "127.0.0.5", true)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, kvm1.qemuLog())
	}
	fmt.Fprintf(out, "plan:          %s; flags %v; migrate URI %s; TLS destination %s\n",
		r.plan.Transport, r.plan.Flags, r.plan.MigrateURI, r.plan.TLSDestination)
	fmt.Fprintf(out, "migrated:      kvm2 -> kvm1 with native TLS: %s\n", r)
	if r.hits != 0 || !r.tls {
		return errors.New("the memory stream was not TLS")
	}
	if err := d.requireRunning(ctx, kvm1); err != nil {
		return err
	}
	fmt.Fprintf(out, "on kvm1:       %s is running\n", guestName)

	// kvm2 now refuses migrations without TLS, in and out.
	kvm2.forceTLS = true
	if err := kvm2.configure(ctx); err != nil {
		return err
	}
	kvm2.stop()
	if err := kvm2.start(ctx, cache); err != nil {
		return err
	}
	fmt.Fprintf(out, "kvm2:          migrate_tls_force=1 by libvirttls, libvirtd restarted; the plan was:\n%s", indent(kvm2.diff))
	_, err = d.migrate(ctx, kvm1, kvm2, "127.0.0.4", false)
	if e := migration.ClassifyError(err); !errors.Is(e, migration.ErrTLSRequired) {
		return fmt.Errorf("kvm2 did not refuse a migration without VIR_MIGRATE_TLS: %v", err)
	}
	fmt.Fprintf(out, "refused:       kvm1 -> kvm2 without VIR_MIGRATE_TLS: %s\n", firstLine(migration.ClassifyError(err)))
	r, err = d.migrate(ctx, kvm1, kvm2, "127.0.0.4", true)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, kvm2.qemuLog())
	}
	fmt.Fprintf(out, "migrated:      kvm1 -> kvm2 with native TLS: %s\n", r)
	if r.hits != 0 || !r.tls {
		return errors.New("the memory stream was not TLS")
	}
	if err := d.requireRunning(ctx, kvm2); err != nil {
		return err
	}
	fmt.Fprintf(out, "on kvm2:       %s is running\n", guestName)

	// The documented alternative: peer-to-peer tunnelled, the memory
	// inside kvm2's libvirtd connection to kvm1 (qemu+tls), which
	// migrate_tls_force accepts too.
	tunnel, err := migration.NewPlan(kvm2.migrationHost(""), kvm1.migrationHost(""),
		&migration.PlanOptions{Tunnelled: true, PKIPath: pkiPath})
	if err != nil {
		return err
	}
	args, err := tunnel.VirshArgs(guestName)
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := virshURI(ctx, work, tunnel.SourceURI, args...); err != nil {
		return fmt.Errorf("%w\n%s", err, kvm1.qemuLog())
	}
	if err := d.requireRunning(ctx, kvm1); err != nil {
		return err
	}
	fmt.Fprintf(out, "tunnelled:     kvm2 -> kvm1 with flags %v in %v; %s is running on kvm1\n",
		tunnel.Flags, time.Since(start).Round(100*time.Millisecond), guestName)

	// A third host that was never secured.
	kvm3Root := filepath.Join(work, "kvm3", "root")
	if err := os.MkdirAll(filepath.Join(kvm3Root, "etc", "libvirt"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(kvm3Root, "etc", "libvirt", "libvirtd.conf"), []byte("listen_tls = 0\nlisten_tcp = 1\n"), 0o644); err != nil {
		return err
	}
	kvm3Status := libvirttls.CheckHost(ctx, &libvirttls.Config{Root: kvm3Root, RootedConfigPaths: true}, nil)
	kvm3 := migration.HostFromStatus("kvm3", "127.0.0.6", kvm3Status)
	_, err = migration.NewPlan(kvm1.migrationHost(""), kvm3, nil)
	if !errors.Is(err, migration.ErrSecurityMismatch) {
		return fmt.Errorf("secured -> unsecured was not refused: %v", err)
	}
	fmt.Fprintf(out, "refused:       kvm1 -> kvm3: %v\n", err)
	return nil
}

// demo holds what the migrations share.
type demo struct {
	work, pkiPath string
	marker        []byte
}

// result is one migration as the tap saw it.
type result struct {
	plan    *migration.Plan
	took    time.Duration
	bytes   int
	head    []byte
	tls     bool // every byte on the wire is in a well-formed TLS record
	records int  // TLS records on the wire
	hits    int  // marker occurrences on the wire
}

func (r result) String() string {
	kind := "unknown"
	switch {
	case r.tls:
		kind = fmt.Sprintf("TLS: %d well-formed records, nothing outside them", r.records)
	case bytes.HasPrefix(r.head, []byte("QEVM")):
		kind = "QEMU's cleartext stream magic QEVM"
	}
	return fmt.Sprintf("%v; the wire carried %d bytes starting % x (%s), marker seen %d times",
		r.took.Round(100*time.Millisecond), r.bytes, r.head, kind, r.hits)
}

// migrate live-migrates the guest from one host to another with a
// migration plan (its flags stripped of VIR_MIGRATE_TLS unless tls), the
// stream going through a tap on tapAddr in front of the destination's
// migration_address.
func (d *demo) migrate(ctx context.Context, from, to *host, tapAddr string, tls bool) (result, error) {
	tp, err := newTap(tapAddr, to.addr)
	if err != nil {
		return result{}, err
	}
	defer tp.close()
	dst := to.migrationHost(tapAddr)
	dst.MigrationPort = tp.port
	plan, err := migration.NewPlan(from.migrationHost(""), dst, &migration.PlanOptions{PKIPath: d.pkiPath})
	if err != nil {
		return result{}, err
	}
	if !tls {
		plan.Flags &^= migration.FlagTLS
		plan.TLSDestination = ""
	}
	args, err := plan.VirshArgs(guestName)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	if _, err := virshURI(ctx, d.work, plan.SourceURI, args...); err != nil {
		return result{}, err
	}
	took := time.Since(start)
	wire := tp.stream()
	records, recordErr := tlsRecords(wire)
	return result{plan: plan, took: took, bytes: len(wire), head: bytes.Clone(wire[:min(len(wire), 8)]),
		tls: recordErr == nil && len(wire) > 0, records: records, hits: bytes.Count(wire, d.marker)}, nil
}

func (d *demo) requireRunning(ctx context.Context, h *host) error {
	state, err := virsh(ctx, d.work, h.addr, h.port, d.pkiPath, "domstate", guestName)
	if err != nil {
		return err
	}
	if strings.TrimSpace(state) != "running" {
		return fmt.Errorf("the guest is %q on %s", strings.TrimSpace(state), h.name)
	}
	return nil
}

// indent indents every line of s for the report.
func indent(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString("               " + line)
	}
	return b.String()
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// guestXML is a 64 MiB TCG guest without disk, whose RAM holds the
// marker page at markerAddr.
func guestXML(markerFile string) string {
	return `<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>` + guestName + `</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-device'/>
    <qemu:arg value='loader,file=` + markerFile + `,addr=` + fmt.Sprintf("%#x", markerAddr) + `'/>
  </qemu:commandline>
</domain>
`
}

// virsh runs virsh against the libvirtd at addr:port with the client
// credentials in pkiPath.
func virsh(ctx context.Context, work, addr string, port int, pkiPath string, args ...string) (string, error) {
	uri := "qemu+tls://" + net.JoinHostPort(addr, strconv.Itoa(port)) + "/system?pkipath=" + pkiPath
	return virshURI(ctx, work, uri, args...)
}

func virshURI(ctx context.Context, work, uri string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", uri}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+work, "XDG_CACHE_HOME="+work, "XDG_CONFIG_HOME="+work)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		return string(out), fmt.Errorf("virsh %s: %s", args[0], msg)
	}
	return string(out), nil
}
