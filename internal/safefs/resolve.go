//go:build unix

package safefs

import (
	"strings"

	"golang.org/x/sys/unix"
)

// openBeneath opens rel beneath the directory dirfd with flags and perm
// (for O_CREAT), following no symbolic link in any component: by one
// openat2 call where the kernel has it, else one directory at a time.
// The descriptor is close-on-exec.
func openBeneath(dirfd int, rel string, flags int, perm uint32) (int, error) {
	if err := checkRel(rel); err != nil {
		return -1, err
	}
	flags |= unix.O_CLOEXEC | unix.O_NOFOLLOW
	if fd, err, ok := openat2Beneath(dirfd, rel, flags, perm); ok {
		return fd, err
	}
	return openByComponent(dirfd, rel, flags, perm)
}

// openByComponent is openBeneath without openat2: each directory on the
// way is opened relative to the previous one with O_NOFOLLOW|O_DIRECTORY.
func openByComponent(dirfd int, rel string, flags int, perm uint32) (int, error) {
	fd := dirfd
	closeFd := func() {
		if fd != dirfd {
			unix.Close(fd)
		}
	}
	defer func() { closeFd() }()
	for {
		comp, rest, more := strings.Cut(rel, "/")
		if !more {
			nfd, err := ignoringEINTR(func() (int, error) { return unix.Openat(fd, comp, flags, perm) })
			if err != nil {
				return -1, linkError(fd, comp, err)
			}
			return nfd, nil
		}
		nfd, err := ignoringEINTR(func() (int, error) {
			return unix.Openat(fd, comp, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|searchFlags, 0)
		})
		if err != nil {
			return -1, linkError(fd, comp, err)
		}
		closeFd()
		fd, rel = nfd, rest
	}
}

// linkError turns the error of opening name in dirfd into ErrSymlink when
// name is a symbolic link (ELOOP from O_NOFOLLOW, or ENOTDIR when
// O_PATH|O_NOFOLLOW opened the link and O_DIRECTORY refused it).
func linkError(dirfd int, name string, err error) error {
	switch err {
	case unix.ELOOP:
		return ErrSymlink
	case unix.ENOTDIR:
		var st unix.Stat_t
		if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return ErrSymlink
		}
	}
	return err
}
