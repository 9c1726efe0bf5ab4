package libvirttls

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestApplyRacesLinkSwaps: while Apply runs, a goroutine swaps two
// directories the plan writes into (etc/libvirt, where qemu.conf is
// edited, and etc/pki/qemu, whose mode the plan fixes and whose key and
// certificate it replaces) for links to copies outside the root, and
// back, in a loop: what a user who can write under the root does to a
// root process. Whatever Apply returns, nothing outside the root may
// change. Resolving paths once and then writing by path (the code before
// internal/safefs) chmod-ed and wrote the copies within a few iterations.
func TestApplyRacesLinkSwaps(t *testing.T) {
	ca := newTestCA(t)
	creds, _ := ca.host(t, "kvm1.example.org")
	renewed, _ := ca.host(t, "kvm1.example.org")
	iterations := 60
	if testing.Short() {
		iterations = 20
	}
	var applied, refused int
	for i := range iterations {
		root := newRoot(t)
		opts := &Config{LookupGroup: fakeGroups, Root: root}
		first, err := NewPlan(t.Context(), creds, opts)
		require.NoError(t, err)
		require.NoError(t, first.Apply(t.Context(), nil))
		require.NoError(t, os.Chmod(opts.DiskPath(QEMUDir), 0o755))

		outside := t.TempDir()
		dirs := []string{"etc/libvirt", "etc/pki/qemu"}
		for _, d := range dirs {
			copyDir := filepath.Join(outside, filepath.Base(d))
			require.NoError(t, os.CopyFS(copyDir, os.DirFS(filepath.Join(root, d))))
			require.NoError(t, os.Chmod(copyDir, 0o755))
			require.NoError(t, os.Symlink(copyDir, filepath.Join(root, d)+".link"))
		}
		before := snapshot(t, outside)

		opts2 := *opts
		opts2.MigrateTLSForce = true
		plan, err := NewPlan(t.Context(), renewed, &opts2)
		require.NoError(t, err)

		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			for !stop.Load() {
				for _, d := range dirs {
					p := filepath.Join(root, d)
					_ = os.Rename(p, p+".parked")
					_ = os.Rename(p+".link", p)
				}
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
				for _, d := range dirs {
					p := filepath.Join(root, d)
					_ = os.Rename(p, p+".link")
					_ = os.Rename(p+".parked", p)
				}
				time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
			}
		})
		err = plan.Apply(t.Context(), nil)
		stop.Store(true)
		wg.Wait()
		if err == nil {
			applied++
		} else {
			refused++
		}
		if !assert.Equal(t, digests(before), digests(snapshot(t, outside)), "iteration %d: Apply (error %v) changed files outside the root", i, err) {
			break
		}
	}
	t.Logf("%d applies went through, %d were refused", applied, refused)
	assert.Positive(t, refused, "the swaps raced with Apply")
}

// digests shortens a snapshot's descriptions to a hash, for readable
// failures.
func digests(snap map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range snap {
		sum := sha256.Sum256([]byte(v))
		out[k] = hex.EncodeToString(sum[:8])
	}
	return out
}
