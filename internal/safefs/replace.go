//go:build unix

package safefs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// target is an entry's parent directory, opened, and its last component.
type target struct {
	e      *Entry
	dirfd  int
	owned  bool // dirfd is ours to close
	name   string
	tmp    string // the staged file or link, until renamed
	backup string // a hard link to the old target
	placed bool   // renamed over the target
}

func openTarget(e *Entry) (*target, error) {
	if e.Dir == nil {
		return nil, &fs.PathError{Op: "open", Path: e.Path, Err: fs.ErrInvalid}
	}
	parent, name, err := splitRel(e.Path)
	if err != nil {
		return nil, e.Dir.pathErr("open", e.Path, err)
	}
	t := &target{e: e, dirfd: e.Dir.fd, name: name}
	if parent != "" {
		fd, err := openBeneath(e.Dir.fd, parent, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return nil, e.Dir.pathErr("open", parent, err)
		}
		t.dirfd, t.owned = fd, true
	}
	// A rename would replace a device or an empty directory: refuse
	// what is not a file or a link.
	if fi, err := lstatAt(t.dirfd, name); err == nil && !fi.Mode().IsRegular() && fi.Mode()&fs.ModeSymlink == 0 {
		t.close()
		return nil, e.Dir.pathErr("replace", e.Path, ErrNotReplaceable)
	}
	return t, nil
}

func (t *target) close() {
	if t.owned {
		unix.Close(t.dirfd)
		t.owned = false
	}
}

func (t *target) err(op string, err error) error { return t.e.Dir.pathErr(op, t.e.Path, err) }

// freeName returns "."+name+"."+what+"-"+random hex, for a new file next
// to name.
func freeName(name, what string) string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return "." + name + "." + what + "-" + hex.EncodeToString(r[:])
}

// createTemp creates the temporary file of t: O_EXCL|O_NOFOLLOW, mode
// 0600 until fill sets the entry's.
func (t *target) createTemp(o *Options) (*os.File, error) {
	if err := o.step("create", t.e.Path); err != nil {
		return nil, t.err("create", err)
	}
	for range 16 {
		tmp := freeName(t.name, "tmp")
		fd, err := ignoringEINTR(func() (int, error) {
			return unix.Openat(t.dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		})
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return nil, t.err("create", err)
		}
		t.tmp = tmp
		return os.NewFile(uintptr(fd), t.e.Dir.join(t.e.Path)), nil
	}
	return nil, t.err("create", fs.ErrExist)
}

// fill gives f the entry's owner and mode, writes data, syncs and closes
// it.
func (t *target) fill(f *os.File, data []byte, o *Options) error {
	err := func() error {
		if w := t.e.Owner; w != nil {
			if err := o.step("chown", t.e.Path); err != nil {
				return err
			}
			if err := f.Chown(w.UID, w.GID); err != nil {
				return err
			}
		}
		mode := t.e.Mode.Perm()
		if mode == 0 {
			mode = 0o600
		}
		if err := o.step("chmod", t.e.Path); err != nil {
			return err
		}
		if err := f.Chmod(mode); err != nil {
			return err
		}
		if err := o.step("write", t.e.Path); err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		if err := o.step("sync", t.e.Path); err != nil {
			return err
		}
		return f.Sync()
	}()
	cerr := f.Close()
	if err == nil {
		if err = o.step("close", t.e.Path); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return t.err("write", unwrapPath(err))
	}
	return nil
}

// stageLink creates the entry's symbolic link under a temporary name.
func (t *target) stageLink(o *Options) error {
	if err := o.step("symlink", t.e.Path); err != nil {
		return t.err("symlink", err)
	}
	for range 16 {
		tmp := freeName(t.name, "tmp")
		err := unix.Symlinkat(t.e.Link, t.dirfd, tmp)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return t.err("symlink", err)
		}
		t.tmp = tmp
		if w := t.e.Owner; w != nil {
			if err := o.step("chown", t.e.Path); err != nil {
				return t.err("chown", err)
			}
			if err := unix.Fchownat(t.dirfd, tmp, w.UID, w.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return t.err("chown", err)
			}
		}
		return nil
	}
	return t.err("symlink", fs.ErrExist)
}

// keepBackup hard-links an existing target to a backup name (linkat does
// not follow a link: a link is backed up as itself).
func (t *target) keepBackup(o *Options) error {
	if err := o.step("link", t.e.Path); err != nil {
		return t.err("link", err)
	}
	for range 16 {
		b := freeName(t.name, "bak")
		err := unix.Linkat(t.dirfd, t.name, t.dirfd, b, 0)
		switch err {
		case nil:
			t.backup = b
			return nil
		case unix.ENOENT:
			return nil
		case unix.EEXIST:
			continue
		}
		return t.err("link", err)
	}
	return t.err("link", fs.ErrExist)
}

// install renames the staged file or link over the target.
func (t *target) install(o *Options) error {
	if err := o.step("rename", t.e.Path); err != nil {
		return t.err("rename", err)
	}
	if err := unix.Renameat(t.dirfd, t.tmp, t.dirfd, t.name); err != nil {
		return t.err("rename", err)
	}
	t.tmp, t.placed = "", true
	return nil
}

// restore puts the old target back, or removes the new one.
func (t *target) restore() error {
	var err error
	if t.backup != "" {
		err = unix.Renameat(t.dirfd, t.backup, t.dirfd, t.name)
		if err == nil {
			t.backup = ""
		}
	} else {
		err = unix.Unlinkat(t.dirfd, t.name, 0)
	}
	if err != nil {
		return t.err("restore", err)
	}
	t.placed = false
	return nil
}

// cleanup removes the temporary file and backup and closes the parent.
func (t *target) cleanup() {
	if t.tmp != "" {
		_ = unix.Unlinkat(t.dirfd, t.tmp, 0)
		t.tmp = ""
	}
	if t.backup != "" {
		_ = unix.Unlinkat(t.dirfd, t.backup, 0)
		t.backup = ""
	}
	t.close()
}

// Replace writes every entry next to its target, then renames them all
// into place, as the package documentation describes. When it fails
// before the last rename, the targets are as they were (unless restoring
// one failed too, which the error then says) and no temporary file is
// left. A failure to sync a directory after the renames is returned
// with every target replaced.
func Replace(entries []Entry, o *Options) (err error) {
	var ts []*target
	defer func() {
		for _, t := range ts {
			t.cleanup()
		}
	}()
	for i := range entries {
		t, err := openTarget(&entries[i])
		if err != nil {
			return err
		}
		ts = append(ts, t)
		if t.e.Link != "" {
			err = t.stageLink(o)
		} else {
			var f *os.File
			if f, err = t.createTemp(o); err == nil {
				err = t.fill(f, t.e.Data, o)
			}
		}
		if err != nil {
			return err
		}
	}
	for _, t := range ts {
		if err := t.keepBackup(o); err != nil {
			return err
		}
	}
	for i, t := range ts {
		if err := t.install(o); err != nil {
			errs := []error{err}
			for _, done := range ts[:i] {
				if rerr := done.restore(); rerr != nil {
					errs = append(errs, rerr)
				}
			}
			return errors.Join(errs...)
		}
	}
	return syncDirs(ts, o)
}

// syncDirs syncs each distinct directory holding a target once.
func syncDirs(ts []*target, o *Options) error {
	type devIno struct{ dev, ino uint64 }
	seen := map[devIno]bool{}
	var errs []error
	for _, t := range ts {
		var st unix.Stat_t
		if err := unix.Fstat(t.dirfd, &st); err == nil {
			k := devIno{uint64(st.Dev), uint64(st.Ino)}
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		err := o.step("syncdir", t.e.Path)
		if err == nil {
			err = unix.Fsync(t.dirfd)
		}
		if err != nil {
			errs = append(errs, t.err("sync", err))
		}
	}
	return errors.Join(errs...)
}

// WriteFile replaces the file at path with data and mode perm (0 means
// 0600) atomically: a temporary file in the same directory, renamed over
// the target. A symbolic link at path is replaced, not followed. The
// directory part of path is resolved as the system does.
func WriteFile(path string, data []byte, perm fs.FileMode, o *Options) error {
	d, err := OpenRoot(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return Replace([]Entry{{Dir: d, Path: filepath.Base(path), Data: data, Mode: perm}}, o)
}

// unwrapPath strips an *fs.PathError from os.File methods, whose path the
// caller names anyway.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
