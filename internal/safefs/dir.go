//go:build unix

package safefs

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is an open directory; see the package documentation for how paths
// beneath it are resolved. A Dir must not be used after Close, nor closed
// while another goroutine uses it.
type Dir struct {
	f    *os.File // owns fd; closes it if the Dir is dropped
	fd   int
	path string // for messages
}

// OpenRoot opens the directory at path. path itself is resolved as the
// operating system does (a link in it is followed: the caller chose it);
// what lies beneath the returned Dir is not.
func OpenRoot(path string) (*Dir, error) {
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return newDir(fd, path), nil
}

func newDir(fd int, p string) *Dir {
	return &Dir{f: os.NewFile(uintptr(fd), p), fd: fd, path: p}
}

// Name returns the path the directory was opened as, for messages.
func (d *Dir) Name() string { return d.path }

// Close closes the directory.
func (d *Dir) Close() error {
	if d == nil || d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// join returns the display path of rel.
func (d *Dir) join(rel string) string {
	if rel == "" {
		return d.path
	}
	return d.path + "/" + rel
}

func (d *Dir) pathErr(op, rel string, err error) error {
	return &fs.PathError{Op: op, Path: d.join(rel), Err: err}
}

// OpenDir opens the directory rel beneath d.
func (d *Dir) OpenDir(rel string) (*Dir, error) {
	fd, err := openBeneath(d.fd, rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, d.pathErr("open", rel, err)
	}
	return newDir(fd, d.join(rel)), nil
}

// Open opens the file rel beneath d for reading. It does not block on a
// named pipe: callers check what they got with Stat.
func (d *Dir) Open(rel string) (*os.File, error) {
	fd, err := openBeneath(d.fd, rel, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, d.pathErr("open", rel, err)
	}
	return os.NewFile(uintptr(fd), d.join(rel)), nil
}

// atParent runs op with the descriptor of rel's parent directory, opened
// beneath d, and rel's last component.
func (d *Dir) atParent(rel string, op func(dirfd int, name string) error) error {
	parent, name, err := splitRel(rel)
	if err != nil {
		return err
	}
	if parent == "" {
		return op(d.fd, name)
	}
	pfd, err := openBeneath(d.fd, parent, unix.O_DIRECTORY|searchFlags, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return op(pfd, name)
}

// Lstat describes rel beneath d; a final symbolic link is described, not
// followed.
func (d *Dir) Lstat(rel string) (fs.FileInfo, error) {
	var fi *fileInfo
	err := d.atParent(rel, func(dirfd int, name string) error {
		var err error
		fi, err = lstatAt(dirfd, name)
		return err
	})
	if err != nil {
		return nil, d.pathErr("lstat", rel, err)
	}
	return fi, nil
}

// Stat describes d itself.
func (d *Dir) Stat() (fs.FileInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return nil, d.pathErr("stat", "", err)
	}
	return newFileInfo(path.Base(d.path), &st), nil
}

// Readlink returns the target of the symbolic link rel beneath d.
func (d *Dir) Readlink(rel string) (string, error) {
	var target string
	err := d.atParent(rel, func(dirfd int, name string) error {
		var err error
		target, err = readlinkAt(dirfd, name)
		return err
	})
	if err != nil {
		return "", d.pathErr("readlink", rel, err)
	}
	return target, nil
}

// Mkdir creates the directory rel beneath d with perm (less the umask).
func (d *Dir) Mkdir(rel string, perm fs.FileMode) error {
	err := d.atParent(rel, func(dirfd int, name string) error {
		return unix.Mkdirat(dirfd, name, uint32(perm.Perm()))
	})
	if err != nil {
		return d.pathErr("mkdir", rel, err)
	}
	return nil
}

// Remove removes the file, link or empty directory rel beneath d.
func (d *Dir) Remove(rel string) error {
	err := d.atParent(rel, func(dirfd int, name string) error {
		err := unix.Unlinkat(dirfd, name, 0)
		if err == unix.EISDIR || err == unix.EPERM {
			if derr := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); derr != unix.ENOTDIR {
				err = derr
			}
		}
		return err
	})
	if err != nil {
		return d.pathErr("remove", rel, err)
	}
	return nil
}

// Chmod sets the permission bits of d itself.
func (d *Dir) Chmod(mode fs.FileMode) error {
	if err := unix.Fchmod(d.fd, uint32(mode.Perm())); err != nil {
		return d.pathErr("chmod", "", err)
	}
	return nil
}

// Chown sets the owner and group of d itself.
func (d *Dir) Chown(uid, gid int) error {
	if err := unix.Fchown(d.fd, uid, gid); err != nil {
		return d.pathErr("chown", "", err)
	}
	return nil
}

// Sync flushes d's entries to disk.
func (d *Dir) Sync() error {
	if err := unix.Fsync(d.fd); err != nil {
		return d.pathErr("sync", "", err)
	}
	return nil
}

// splitRel checks rel and splits it into its parent ("" for the
// directory itself) and its last component.
func splitRel(rel string) (parent, name string, err error) {
	if err := checkRel(rel); err != nil {
		return "", "", err
	}
	i := strings.LastIndexByte(rel, '/')
	return rel[:max(i, 0)], rel[i+1:], nil
}

// checkRel refuses a path that is empty, absolute, holds "." or "..", or
// has an empty component.
func checkRel(rel string) error {
	if rel == "" {
		return unix.ENOENT
	}
	for c := range strings.SplitSeq(rel, "/") {
		if c == "" || c == "." || c == ".." {
			return ErrNotBeneath
		}
	}
	return nil
}

func lstatAt(dirfd int, name string) (*fileInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, err
	}
	return newFileInfo(name, &st), nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	for n := 256; ; n *= 2 {
		buf := make([]byte, n)
		got, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if got < n {
			return string(buf[:got]), nil
		}
		if n >= 1<<16 {
			return "", unix.ENAMETOOLONG
		}
	}
}

// fileInfo is an fs.FileInfo from a stat(2) result; Sys returns the
// *unix.Stat_t.
type fileInfo struct {
	name string
	st   unix.Stat_t
}

func newFileInfo(name string, st *unix.Stat_t) *fileInfo {
	return &fileInfo{name: name, st: *st}
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.st.Size }
func (fi *fileInfo) IsDir() bool        { return fi.Mode().IsDir() }
func (fi *fileInfo) Sys() any           { return &fi.st }
func (fi *fileInfo) ModTime() time.Time { return time.Unix(fi.st.Mtim.Unix()) }

func (fi *fileInfo) Mode() fs.FileMode {
	m := fs.FileMode(fi.st.Mode & 0o777)
	switch fi.st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if fi.st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if fi.st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if fi.st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// FileOwner returns the owner and group of a file described by this package
// or by package os, and false for any other fs.FileInfo.
func FileOwner(fi fs.FileInfo) (uid, gid int, ok bool) {
	if s, ok := fi.Sys().(*unix.Stat_t); ok {
		return int(s.Uid), int(s.Gid), true
	}
	if uid, gid, ok := sysOwner(fi); ok {
		return uid, gid, true
	}
	return -1, -1, false
}

// SameFile reports whether a and b, from this package or package os,
// describe the same file.
func SameFile(a, b fs.FileInfo) bool {
	da, ia, ok1 := devIno(a)
	db, ib, ok2 := devIno(b)
	return ok1 && ok2 && da == db && ia == ib
}

func devIno(fi fs.FileInfo) (dev, ino uint64, ok bool) {
	if fi == nil {
		return 0, 0, false
	}
	if s, ok := fi.Sys().(*unix.Stat_t); ok {
		return uint64(s.Dev), uint64(s.Ino), true
	}
	return sysDevIno(fi)
}

func ignoringEINTR(f func() (int, error)) (int, error) {
	for {
		fd, err := f()
		if err != unix.EINTR {
			return fd, err
		}
	}
}
