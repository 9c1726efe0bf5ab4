package safefs

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// searchFlags open a directory only to look up names in it.
const searchFlags = unix.O_PATH

// noOpenat2 is set once openat2 is known to be missing (ENOSYS), and by
// tests that force the fallback.
var noOpenat2 atomic.Bool

// openat2Beneath is openBeneath by openat2(2) with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS. ok is false when openat2 is unavailable and the
// caller must fall back.
func openat2Beneath(dirfd int, rel string, flags int, perm uint32) (fd int, err error, ok bool) {
	if noOpenat2.Load() {
		return -1, nil, false
	}
	how := unix.OpenHow{
		Flags:   uint64(flags),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	if flags&unix.O_CREAT != 0 {
		how.Mode = uint64(perm)
	}
	for range 64 {
		fd, err = unix.Openat2(dirfd, rel, &how)
		switch err {
		case nil:
			return fd, nil, true
		case unix.EINTR, unix.EAGAIN:
			// EAGAIN: a rename or mount raced with the lookup; retry.
			continue
		case unix.ENOSYS:
			noOpenat2.Store(true)
			return -1, nil, false
		case unix.EPERM:
			// A seccomp filter that does not know openat2 answers EPERM;
			// the fallback fails the same way if the error is real.
			return -1, nil, false
		case unix.ELOOP:
			return -1, ErrSymlink, true
		case unix.ENOTDIR:
			// O_DIRECTORY met a file, or a final link that O_PATH with
			// O_NOFOLLOW let through: the walk one directory at a time
			// tells which (and is as safe, should the tree change).
			return -1, nil, false
		case unix.EXDEV:
			return -1, ErrNotBeneath, true
		}
		return -1, err, true
	}
	return -1, err, true
}
