package libvirttls

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvmpki/kvmpki/internal/peers"
)

// BenchmarkVNCReloadVsRestart measures what a running guest's VNC server
// costs to pick up renewed credentials: ReloadVNCQMP (QEMU display-reload,
// one QMP round trip that reloads the tls-creds-x509 directory) against
// the restart it replaces, measured in the same iterations as the start
// of a new QEMU until its VNC server listens (a lower bound: a real
// restart also stops the guest and boots its OS again). It reports both
// medians and their ratio (x-restart), with the directory holding
// dh-params.pem; a third median is the reload of a directory without it,
// where QEMU 7.2 generates 2048-bit DH parameters on every load (the
// libvirttls layout writes none, as CloudStack's does not).
func BenchmarkVNCReloadVsRestart(b *testing.B) {
	peers.Require(b, "qemu-system-x86_64")
	ca := newTestCA(b)
	host, _ := ca.host(b, "kvm1.example.org")
	opts := &Config{LookupGroup: fakeGroups, Root: newRoot(b)}
	applyCreds(b, host, opts)
	vncDir := opts.DiskPath(VNCDir)
	// The same files, plus dh-params.pem, in a directory of their own.
	withDH := b.TempDir()
	for _, name := range []string{QEMUCACert, QEMUServerCert, QEMUServerKey} {
		data, err := os.ReadFile(filepath.Join(vncDir, name))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(withDH, name), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	peers.WriteDHParams(b, withDH)
	q, err := peers.StartQEMUVNCFromDir(b, withDH, peers.QEMUVNCOptions{QMP: true})
	if err != nil {
		b.Fatal(err)
	}
	noDH, err := peers.StartQEMUVNCFromDir(b, vncDir, peers.QEMUVNCOptions{QMP: true})
	if err != nil {
		b.Fatal(err)
	}
	var reload, reloadNoDH, restart []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := ReloadVNCQMP(b.Context(), q.QMPSocket); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if err := ReloadVNCQMP(b.Context(), noDH.QMPSocket); err != nil {
			b.Fatal(err)
		}
		mid2 := time.Now()
		if _, err := peers.StartQEMUVNCFromDir(b, withDH, peers.QEMUVNCOptions{}); err != nil {
			b.Fatal(err)
		}
		end := time.Now()
		reload = append(reload, mid.Sub(start))
		reloadNoDH = append(reloadNoDH, mid2.Sub(mid))
		restart = append(restart, end.Sub(mid2))
	}
	mr, mn, ms := median(reload), median(reloadNoDH), median(restart)
	b.ReportMetric(float64(mr.Microseconds()), "reload-µs")
	b.ReportMetric(float64(mn.Microseconds()), "reload-no-dh-params-µs")
	b.ReportMetric(float64(ms.Microseconds()), "restart-µs")
	b.ReportMetric(float64(mr)/float64(ms), "x-restart")
}

// BenchmarkServerUpdateTLSVsRestart measures libvirtd picking up renewed
// credentials: "virt-admin server-update-tls libvirtd" against a running
// daemon (the plan's action, including virt-admin's own start) against
// the start of a new libvirtd until it listens, measured in the same
// iterations (a lower bound of a restart, which also stops the old
// daemon, drops its clients and, with the QEMU driver, reconnects to
// every guest). It reports both medians and their ratio (x-restart), and
// the median of a virt-admin run that only connects and lists the
// servers, the share of the action that is virt-admin itself.
func BenchmarkServerUpdateTLSVsRestart(b *testing.B) {
	peers.Require(b, "libvirtd", "virt-admin")
	ca := newTestCA(b)
	host, _ := ca.host(b, "kvm1.example.org")
	_, _, adminURI := hostPathsLibvirtd(b, host)
	server := pkiOf(host)
	update := Action{Command: []string{"virt-admin", "-c", adminURI, "server-update-tls", "libvirtd"}}
	// virt-admin connecting and listing the servers: the part of the
	// action that is not the reload itself.
	connect := Action{Command: []string{"virt-admin", "-c", adminURI, "srv-list"}}
	var reload, restart, overhead []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := ExecAction(b.Context(), connect); err != nil {
			b.Fatal(err)
		}
		overhead = append(overhead, time.Since(start))
		start = time.Now()
		if err := ExecAction(b.Context(), update); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if _, err := peers.StartLibvirtd(b, server, peers.LibvirtdOptions{}); err != nil {
			b.Fatal(err)
		}
		end := time.Now()
		reload = append(reload, mid.Sub(start))
		restart = append(restart, end.Sub(mid))
	}
	mr, ms := median(reload), median(restart)
	b.ReportMetric(float64(mr.Microseconds()), "reload-µs")
	b.ReportMetric(float64(median(overhead).Microseconds()), "virt-admin-connect-µs")
	b.ReportMetric(float64(ms.Microseconds()), "restart-µs")
	b.ReportMetric(float64(mr)/float64(ms), "x-restart")
}
