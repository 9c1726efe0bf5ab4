package migration_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/migration"
	"github.com/kvmpki/kvmpki/provider"
)

// median returns the median of ds in milliseconds.
func median(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	m := s[n/2]
	if n%2 == 0 {
		m = (s[n/2-1] + s[n/2]) / 2
	}
	return float64(m) / float64(time.Millisecond)
}

// BenchmarkNativeTLSMigration measures what native TLS costs a live
// migration between two real QEMU processes over loopback, against the
// baseline CloudStack runs: the same migration in clear. The guest holds
// 24 MiB of random memory (incompressible, unlike a fresh guest's zero
// pages). Runs are interleaved and timed by QEMU's own total-time; the
// medians are reported, and x-baseline is TLS time / cleartext time.
func BenchmarkNativeTLSMigration(b *testing.B) {
	peers.Require(b, "qemu-system-x86_64")
	ca := newCA(b, "kvmpki migration CA")
	kvm1 := ca.issue(b, "kvm1.example.org", provider.RoleHost, []string{"kvm1.example.org"}, nil, time.Hour)
	kvm2 := ca.issue(b, "kvm2.example.org", provider.RoleHost, []string{"kvm2.example.org"}, nil, time.Hour)
	_, srcDir := securedHostTB(b, ca.bundle, kvm1, nil)
	_, dstDir := securedHostTB(b, ca.bundle, kvm2, nil)
	plan, err := migration.NewPlan(
		migration.Host{Address: "127.0.0.1", State: migration.StateSecured, LibvirtPort: 26514},
		migration.Host{Address: "127.0.0.1", State: migration.StateSecured, LibvirtPort: 26515, Certificate: kvm2.cert},
		nil)
	require.NoError(b, err)

	const fill = 24 << 20
	var tlsTimes, plainTimes []time.Duration
	for b.Loop() {
		for _, tls := range []bool{true, false} {
			run := runQEMUMigrationFill(b, srcDir, dstDir, plan, tls, fill)
			require.Equal(b, "completed", run.status.Status, run.status.ErrorDesc)
			require.Greater(b, len(run.stream), fill)
			d := time.Duration(run.status.TotalTime) * time.Millisecond
			if tls {
				tlsTimes = append(tlsTimes, d)
			} else {
				plainTimes = append(plainTimes, d)
			}
		}
	}
	b.ReportMetric(median(tlsTimes), "tls-ms")
	b.ReportMetric(median(plainTimes), "cleartext-ms")
	b.ReportMetric(median(tlsTimes)/median(plainTimes), "x-baseline")
}

// BenchmarkPreflight compares Preflight with the check CloudStack relies
// on to call a host secured, opening a libvirt TLS connection (virsh -c
// test+tls://... list), against the same real libvirtd; runs are
// interleaved, medians reported, x-baseline is Preflight / virsh.
func BenchmarkPreflight(b *testing.B) {
	peers.Require(b, "libvirtd", "virsh")
	ca := newCA(b, "kvmpki migration CA")
	server := ca.issue(b, "kvm2", provider.RoleHost, []string{"localhost"}, nil, time.Hour)
	source := ca.issue(b, "kvm1", provider.RoleHost, []string{"kvm1"}, nil, time.Hour)
	d, err := peers.StartLibvirtd(b, ca.pki(server, nil), peers.LibvirtdOptions{})
	require.NoError(b, err)
	host := migration.Host{Address: "localhost", State: migration.StateSecured, LibvirtPort: d.Port}
	cfg := preflightOptions(b, ca, source, nil)

	var pre, virsh []time.Duration
	for b.Loop() {
		start := time.Now()
		require.NoError(b, migration.Preflight(b.Context(), host, cfg))
		pre = append(pre, time.Since(start))
		start = time.Now()
		require.NoError(b, d.Connect(b, ca.pki(source, nil), "localhost"))
		virsh = append(virsh, time.Since(start))
	}
	b.ReportMetric(median(pre), "preflight-ms")
	b.ReportMetric(median(virsh), "virsh-ms")
	b.ReportMetric(median(pre)/median(virsh), "x-baseline")
}
