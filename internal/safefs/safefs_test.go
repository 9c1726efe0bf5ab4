//go:build unix

package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/safefs/safefstest"
)

// tree makes root/a/b/c/file and returns root and a directory outside it
// holding a victim file.
func tree(t *testing.T) (root, outside string) {
	t.Helper()
	root = t.TempDir()
	outside = t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "a/b/c"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "a/b/c/file"), []byte("inside"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(outside, "b/c"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "b/c/file"), []byte("victim"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "file"), []byte("victim"), 0o644))
	return root, outside
}

// snapshot describes every file under dir (safefstest.Snapshot).
func snapshot(t *testing.T, dir string) map[string]string { return safefstest.Snapshot(t, dir) }

func openRoot(t *testing.T, dir string) *Dir {
	t.Helper()
	d, err := OpenRoot(dir)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// ops are the operations that resolve a path beneath a Dir, each given a
// path to a directory ("dir") and the name of a file in it.
var ops = []struct {
	name string
	do   func(d *Dir, dir, file string) error
}{
	{"OpenDir", func(d *Dir, dir, _ string) error {
		sub, err := d.OpenDir(dir)
		if err == nil {
			// What a caller then does with it: chmod through the fd.
			err = errors.Join(sub.Chmod(0o777), sub.Close())
		}
		return err
	}},
	{"Open", func(d *Dir, dir, file string) error {
		f, err := d.Open(dir + "/" + file)
		if err == nil {
			f.Close()
		}
		return err
	}},
	{"Lstat", func(d *Dir, dir, file string) error { _, err := d.Lstat(dir + "/" + file); return err }},
	{"Readlink", func(d *Dir, dir, file string) error { _, err := d.Readlink(dir + "/" + file); return err }},
	{"Mkdir", func(d *Dir, dir, _ string) error { return d.Mkdir(dir+"/new", 0o777) }},
	{"Remove", func(d *Dir, dir, file string) error { return d.Remove(dir + "/" + file) }},
	{"Replace", func(d *Dir, dir, file string) error {
		return Replace([]Entry{{Dir: d, Path: dir + "/" + file, Data: []byte("written"), Mode: 0o777}}, nil)
	}},
	{"Replace link", func(d *Dir, dir, file string) error {
		return Replace([]Entry{{Dir: d, Path: dir + "/" + file, Link: "/etc/passwd"}}, nil)
	}},
}

// TestSymlinkInEveryPosition plants a link in each directory position of
// a/b/c (to a copy of the tree outside root, and to a directory inside
// root) and runs every operation through it: each fails with ErrSymlink
// and nothing on either side of the link changes.
func TestSymlinkInEveryPosition(t *testing.T) {
	eachResolver(t, func(t *testing.T) {
		for _, pos := range []string{"a", "a/b", "a/b/c"} {
			for _, target := range []string{"outside", "inside"} {
				for _, op := range ops {
					t.Run(pos+"/"+target+"/"+op.name, func(t *testing.T) {
						root, outside := tree(t)
						dst := filepath.Join(outside, strings.Repeat("b/", strings.Count(pos, "/")))
						if target == "inside" {
							dst = filepath.Join(root, "elsewhere")
							require.NoError(t, os.MkdirAll(filepath.Join(dst, "c"), 0o755))
						}
						require.NoError(t, os.RemoveAll(filepath.Join(root, pos)))
						require.NoError(t, os.Symlink(dst, filepath.Join(root, pos)))
						beforeIn, beforeOut := snapshot(t, root), snapshot(t, outside)
						err := op.do(openRoot(t, root), "a/b/c", "file")
						require.Error(t, err)
						assert.ErrorIs(t, err, ErrSymlink)
						assert.Equal(t, beforeIn, snapshot(t, root))
						assert.Equal(t, beforeOut, snapshot(t, outside))
						var pe *fs.PathError
						require.ErrorAs(t, err, &pe)
						assert.Contains(t, pe.Path, root, "the error names the path")
					})
				}
			}
		}
	})
}

// TestFinalSymlink: a link as the last component is described and read by
// Lstat and Readlink, refused by Open and OpenDir, removed (not its
// target) by Remove, and replaced (not written through) by Replace.
func TestFinalSymlink(t *testing.T) {
	eachResolver(t, func(t *testing.T) {
		root, outside := tree(t)
		victim := filepath.Join(outside, "file")
		require.NoError(t, os.Symlink(victim, filepath.Join(root, "a/link")))
		require.NoError(t, os.Symlink(outside, filepath.Join(root, "a/dirlink")))
		d := openRoot(t, root)

		fi, err := d.Lstat("a/link")
		require.NoError(t, err)
		assert.Equal(t, fs.ModeSymlink, fi.Mode().Type())
		assert.Equal(t, "link", fi.Name())
		target, err := d.Readlink("a/link")
		require.NoError(t, err)
		assert.Equal(t, victim, target)

		_, err = d.Open("a/link")
		assert.ErrorIs(t, err, ErrSymlink)
		_, err = d.OpenDir("a/dirlink")
		assert.ErrorIs(t, err, ErrSymlink)

		require.NoError(t, Replace([]Entry{{Dir: d, Path: "a/link", Data: []byte("new"), Mode: 0o640}}, nil))
		got, err := os.ReadFile(victim)
		require.NoError(t, err)
		assert.Equal(t, "victim", string(got))
		fi, err = os.Lstat(filepath.Join(root, "a/link"))
		require.NoError(t, err)
		assert.True(t, fi.Mode().IsRegular())
		assert.Equal(t, fs.FileMode(0o640), fi.Mode().Perm())

		require.NoError(t, d.Remove("a/dirlink"))
		assert.DirExists(t, outside)
		assert.NoFileExists(t, filepath.Join(root, "a/dirlink"))
	})
}

// TestPathsNotBeneath: absolute paths, "..", "." and empty components are
// refused before any system call, even where they would stay inside.
func TestPathsNotBeneath(t *testing.T) {
	eachResolver(t, func(t *testing.T) {
		root, outside := tree(t)
		for _, rel := range []string{"/etc", "/", "..", "../" + filepath.Base(outside), "a/..", "a/../a/b", "a/b/../../..", "./a", "a/./b", "a//b", "a/b/", "."} {
			for _, op := range ops {
				t.Run(rel+"/"+op.name, func(t *testing.T) {
					before := snapshot(t, root)
					d := openRoot(t, root)
					err := op.do(d, rel, "file")
					if rel == "." || rel == "a/b/" {
						// dir+"/file" is "./file" or "a/b//file".
						assert.Error(t, err)
					} else {
						assert.ErrorIs(t, err, ErrNotBeneath)
					}
					assert.Equal(t, before, snapshot(t, root))
				})
			}
		}
		_, err := openRoot(t, root).Lstat("")
		assert.ErrorIs(t, err, fs.ErrNotExist)
	})
}

// TestReplace writes files and links together, over an existing file, a
// link planted at a target and nothing, and leaves no temporary file.
func TestReplace(t *testing.T) {
	eachResolver(t, func(t *testing.T) {
		root, outside := tree(t)
		victim := filepath.Join(outside, "file")
		require.NoError(t, os.Symlink(victim, filepath.Join(root, "a/b/planted")))
		d := openRoot(t, root)
		sub, err := d.OpenDir("a")
		require.NoError(t, err)
		defer sub.Close()
		entries := []Entry{
			{Dir: d, Path: "a/b/c/file", Data: []byte("replaced"), Mode: 0o644},
			{Dir: d, Path: "a/b/planted", Data: []byte("key"), Mode: 0o600},
			{Dir: sub, Path: "new", Data: []byte("new")},
			{Dir: d, Path: "a/b/link", Link: "/etc/hostname"},
		}
		require.NoError(t, Replace(entries, nil))
		snap := snapshot(t, root)
		assert.Equal(t, "-rw-r--r-- "+ids()+" replaced", snap["a/b/c/file"])
		assert.Equal(t, "-rw------- "+ids()+" key", snap["a/b/planted"])
		assert.Equal(t, "-rw------- "+ids()+" new", snap["a/new"], "mode 0 is 0600")
		assert.Equal(t, "Lrwxrwxrwx "+ids()+" -> /etc/hostname", snap["a/b/link"])
		got, err := os.ReadFile(victim)
		require.NoError(t, err)
		assert.Equal(t, "victim", string(got))
		assertNoTemp(t, root)
	})
}

func ids() string { return fmt.Sprintf("%d:%d", os.Geteuid(), os.Getegid()) }

func assertNoTemp(t *testing.T, root string) {
	t.Helper()
	for p := range snapshot(t, root) {
		assert.NotRegexp(t, `\.(tmp|bak)-[0-9a-f]{16}$`, p, "temporary file left")
	}
}

// TestReplaceOwner gives files and links their owner (as root only).
func TestReplaceOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root gives files away")
	}
	root := t.TempDir()
	d := openRoot(t, root)
	w := &Owner{UID: 4242, GID: 4343}
	require.NoError(t, Replace([]Entry{
		{Dir: d, Path: "file", Data: []byte("x"), Mode: 0o640, Owner: w},
		{Dir: d, Path: "link", Link: "file", Owner: w},
	}, nil))
	for _, name := range []string{"file", "link"} {
		fi, err := d.Lstat(name)
		require.NoError(t, err)
		uid, gid, ok := FileOwner(fi)
		require.True(t, ok)
		assert.Equal(t, []int{4242, 4343}, []int{uid, gid}, name)
	}
}

// TestReplaceRefusesNonFiles: a rename would replace a device or an empty
// directory; Replace refuses them.
func TestReplaceRefusesNonFiles(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "dir"), 0o755))
	require.NoError(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	d := openRoot(t, root)
	for _, name := range []string{"dir", "fifo"} {
		err := Replace([]Entry{{Dir: d, Path: name, Data: []byte("x")}}, nil)
		assert.ErrorIs(t, err, ErrNotReplaceable, name)
	}
	assert.DirExists(t, filepath.Join(root, "dir"))
	// Open does not block on a pipe.
	f, err := d.Open("fifo")
	require.NoError(t, err)
	f.Close()
}

// TestReplaceFailsAtEveryStep fails each step of a three-file Replace in
// turn: up to the last rename, the files are exactly as before and no
// temporary file or backup is left.
func TestReplaceFailsAtEveryStep(t *testing.T) {
	for _, withOwner := range []bool{false, true} {
		t.Run(fmt.Sprintf("owner=%v", withOwner), func(t *testing.T) {
			root := t.TempDir()
			require.NoError(t, os.Mkdir(filepath.Join(root, "sub"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(root, "one"), []byte("old one"), 0o600))
			require.NoError(t, os.Symlink("one", filepath.Join(root, "sub/link")))
			before := snapshot(t, root)
			d := openRoot(t, root)
			var w *Owner
			if withOwner {
				w = &Owner{UID: os.Geteuid(), GID: os.Getegid()}
			}
			entries := []Entry{
				{Dir: d, Path: "one", Data: []byte("new one"), Owner: w},
				{Dir: d, Path: "two", Data: []byte("new two"), Mode: 0o644, Owner: w},
				{Dir: d, Path: "sub/link", Link: "two", Owner: w},
			}
			var steps []Step
			require.NoError(t, Replace(entries, &Options{Step: func(s Step) error { steps = append(steps, s); return nil }}))
			after := snapshot(t, root)
			var ops []string
			for _, s := range steps {
				ops = append(ops, s.Op)
			}
			t.Log(ops)
			syncs := 0
			for _, s := range steps {
				if s.Op == "syncdir" {
					syncs++
				}
			}
			assert.Equal(t, 2, syncs, "two directories")

			injected := errors.New("injected")
			for i, s := range steps {
				restore(t, root, before)
				n := 0
				err := Replace(entries, &Options{Step: func(Step) error {
					n++
					if n-1 == i {
						return injected
					}
					return nil
				}})
				require.ErrorIs(t, err, injected, "step %d (%s)", i, s.Op)
				if s.Op == "syncdir" {
					assert.Equal(t, after, snapshot(t, root), "a failed directory sync comes after every rename")
				} else {
					assert.Equal(t, before, snapshot(t, root), "step %d (%s %s)", i, s.Op, s.Path)
				}
				assertNoTemp(t, root)
			}
		})
	}
}

// restore puts root back to the snapshot taken by TestReplaceFailsAtEveryStep.
func restore(t *testing.T, root string, _ map[string]string) {
	t.Helper()
	require.NoError(t, os.RemoveAll(filepath.Join(root, "two")))
	require.NoError(t, os.WriteFile(filepath.Join(root, "one"), []byte("old one"), 0o600))
	require.NoError(t, os.Remove(filepath.Join(root, "sub/link")))
	require.NoError(t, os.Symlink("one", filepath.Join(root, "sub/link")))
}

// TestDirSwappedMidOperation: a goroutine swaps root/a/b between a
// directory and a link to a directory outside root, as fast as it can,
// while every operation runs through it many times. Nothing outside root
// is ever written, created, removed or chmod-ed.
func TestDirSwappedMidOperation(t *testing.T) {
	eachResolver(t, func(t *testing.T) {
		root, outside := tree(t)
		require.NoError(t, os.Chmod(filepath.Join(outside, "b"), 0o755))
		before := snapshot(t, outside)
		d := openRoot(t, root)
		b, parked := filepath.Join(root, "a/b"), filepath.Join(root, "a/parked")
		link := filepath.Join(root, "a/link")
		require.NoError(t, os.Symlink(filepath.Join(outside, "b"), link))

		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			for !stop.Load() {
				// b is a directory, then a link, then a directory again.
				_ = os.Rename(b, parked)
				_ = os.Rename(link, b)
				_ = os.Rename(b, link)
				_ = os.Rename(parked, b)
			}
		})
		iterations := 2000
		if testing.Short() {
			iterations = 200
		}
		var ok, refused int
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; i < iterations && time.Now().Before(deadline); i++ {
			for _, op := range ops {
				if err := op.do(d, "a/b/c", "file"); err == nil {
					ok++
				} else {
					refused++
				}
			}
		}
		stop.Store(true)
		wg.Wait()
		assert.Equal(t, before, snapshot(t, outside), "nothing outside root changed")
		t.Logf("%d operations went through, %d were refused", ok, refused)
		assert.Positive(t, refused, "the swap raced with the operations")
	})
}

// TestWriteFile replaces a link planted at the path instead of writing
// its target, and gives the file its mode.
func TestWriteFile(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("untouched"), 0o600))
	out := filepath.Join(dir, "out.pem")
	require.NoError(t, os.Symlink(victim, out))
	require.NoError(t, WriteFile(out, []byte("public"), 0o644, nil))
	got, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "untouched", string(got))
	fi, err := os.Lstat(out)
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular())
	assert.Equal(t, fs.FileMode(0o644), fi.Mode().Perm())

	for _, bad := range []string{"/", dir + "/..", filepath.Join(dir, "missing/out")} {
		assert.Error(t, WriteFile(bad, []byte("x"), 0o644, nil), bad)
	}
}

// TestErrorsNameThePathOnly: errors name the path, never the content.
func TestErrorsNameThePathOnly(t *testing.T) {
	root := t.TempDir()
	secret := []byte("-----BEGIN PRIVATE KEY----- SECRET")
	d := openRoot(t, root)
	err := Replace([]Entry{{Dir: d, Path: "missing/key.pem", Data: secret}}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(root, "missing"))
	assert.NotContains(t, err.Error(), "SECRET")
	err = Replace([]Entry{{Dir: d, Path: "key.pem", Data: secret}}, &Options{Step: func(s Step) error {
		if s.Op == "write" {
			return errors.New("disk full")
		}
		return nil
	}})
	assert.EqualError(t, err, "write "+root+"/key.pem: disk full")
}

// TestPending claims a file, commits or aborts it; NoReplace refuses an
// existing file at claim and at commit.
func TestPending(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("untouched"), 0o600))

	t.Run("commit replaces a link", func(t *testing.T) {
		out := filepath.Join(dir, "crl.pem")
		require.NoError(t, os.Symlink(victim, out))
		p, err := NewPending(out, 0o644, nil)
		require.NoError(t, err)
		require.NoError(t, p.Commit([]byte("crl")))
		p.Abort()
		assert.Equal(t, "-rw-r--r-- "+ids()+" crl", snapshot(t, dir)["crl.pem"])
		got, _ := os.ReadFile(victim)
		assert.Equal(t, "untouched", string(got))
	})
	t.Run("abort", func(t *testing.T) {
		before := snapshot(t, dir)
		p, err := NewPending(filepath.Join(dir, "aborted"), 0o644, nil)
		require.NoError(t, err)
		p.Abort()
		p.Abort()
		assert.Equal(t, before, snapshot(t, dir))
		assert.Error(t, p.Commit([]byte("late")))
	})
	t.Run("no replace", func(t *testing.T) {
		key := filepath.Join(dir, "key.pem")
		require.NoError(t, os.Symlink(victim, key))
		_, err := NewPending(key, 0o600, &Options{NoReplace: true})
		assert.ErrorIs(t, err, fs.ErrExist, "an existing link is not replaced")
		require.NoError(t, os.Remove(key))

		p, err := NewPending(key, 0o600, &Options{NoReplace: true})
		require.NoError(t, err)
		q, err := NewPending(key, 0o644, nil)
		require.NoError(t, err)
		assert.True(t, p.SameTarget(q))
		other, err := NewPending(filepath.Join(dir, "other"), 0o644, nil)
		require.NoError(t, err)
		assert.False(t, p.SameTarget(other))
		other.Abort()
		require.NoError(t, q.Commit([]byte("first")))
		assert.ErrorIs(t, p.Commit([]byte("second")), fs.ErrExist, "the target appeared after the claim")
		got, _ := os.ReadFile(key)
		assert.Equal(t, "first", string(got))

		require.NoError(t, os.Remove(key))
		p, err = NewPending(key, 0o600, &Options{NoReplace: true})
		require.NoError(t, err)
		require.NoError(t, p.Commit([]byte("key")))
		assert.Equal(t, "-rw------- "+ids()+" key", snapshot(t, dir)["key.pem"])
	})
	assertNoTemp(t, dir)
	_, err := NewPending(filepath.Join(dir, "missing/x"), 0o644, nil)
	assert.ErrorIs(t, err, fs.ErrNotExist)
}
