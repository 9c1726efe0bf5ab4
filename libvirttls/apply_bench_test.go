package libvirttls

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pathWrites is the baseline for BenchmarkApply: the same directories,
// files and links written by path (mkdir, a temporary file written,
// chmod-ed, synced and renamed, one directory sync each), with no
// staleness check, no backups and no symlink-free resolution.
func pathWrites(b *testing.B, p *Plan) {
	dirs := map[string]bool{}
	for _, ch := range p.Changes {
		disk := filepath.Join(p.root, ch.Path)
		var err error
		switch ch.Kind {
		case ChangeMkdir:
			if err = os.Mkdir(disk, ch.Mode); err == nil {
				err = os.Chmod(disk, ch.Mode)
			}
		case ChangeLink:
			err = os.Symlink(ch.LinkTarget, disk)
		default:
			var f *os.File
			if f, err = os.CreateTemp(filepath.Dir(disk), ".bench-*"); err != nil {
				break
			}
			_, err = f.Write(ch.after.data)
			if err == nil {
				err = f.Chmod(ch.Mode)
			}
			if err == nil {
				err = f.Sync()
			}
			f.Close()
			if err == nil {
				err = os.Rename(f.Name(), disk)
			}
			dirs[filepath.Dir(disk)] = true
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	for d := range dirs {
		f, err := os.Open(d)
		if err != nil {
			b.Fatal(err)
		}
		f.Sync()
		f.Close()
	}
}

// BenchmarkApply applies a first plan to a fresh root (about 25
// directories, files and links plus both configuration edits) and
// reports the median time against pathWrites in the same iterations
// (x-path-writes): the cost of resolving every path without following a
// link, checking staleness and keeping backups. Planning is not timed.
func BenchmarkApply(b *testing.B) {
	ca := newTestCA(b)
	creds, _ := ca.host(b, "kvm1.example.org")
	var ours, base []time.Duration
	for b.Loop() {
		b.StopTimer()
		opts := goldenConfig()
		opts.Root = newRoot(b)
		plan, err := NewPlan(b.Context(), creds, opts)
		if err != nil {
			b.Fatal(err)
		}
		baseRoot := newRoot(b)
		basePlan := *plan
		basePlan.root = baseRoot
		b.StartTimer()

		start := time.Now()
		if err := plan.Apply(b.Context(), nil); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		pathWrites(b, &basePlan)
		end := time.Now()
		ours = append(ours, mid.Sub(start))
		base = append(base, end.Sub(mid))
	}
	mo, mb := median(ours), median(base)
	b.ReportMetric(float64(mo.Nanoseconds()), "median-ns/apply")
	b.ReportMetric(float64(mb.Nanoseconds()), "base-ns/apply")
	b.ReportMetric(float64(mo)/float64(mb), "x-path-writes")
}
