//go:build unix

package safefs

import (
	"io/fs"
	"syscall"
)

func sysOwner(fi fs.FileInfo) (uid, gid int, ok bool) {
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid), int(s.Gid), true
	}
	return -1, -1, false
}

func sysDevIno(fi fs.FileInfo) (dev, ino uint64, ok bool) {
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Dev), uint64(s.Ino), true
	}
	return 0, 0, false
}
