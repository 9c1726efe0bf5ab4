package safefs

import "io/fs"

// Owner is the owner and group given to a new file or link.
type Owner struct{ UID, GID int }

// Entry is one file or symbolic link of a [Replace].
type Entry struct {
	// Dir and Path name the target: Path is relative to Dir (see the
	// package documentation) and its parent directory must exist.
	Dir  *Dir
	Path string
	// Data is the content of a file.
	Data []byte
	// Link, if not empty, makes the entry a symbolic link to Link;
	// Data and Mode are then unused.
	Link string
	// Mode is the permission bits of a file. If zero, 0600 is used.
	Mode fs.FileMode
	// Owner, if not nil, is given to the file or link before it is
	// renamed into place. If nil, it keeps the caller's.
	Owner *Owner
}

// Step is one file-system step of a write, as reported to
// [Options.Step].
type Step struct {
	// Op is one of "create", "chown", "chmod", "write", "sync",
	// "close", "symlink", "link" (the backup of an existing target, or
	// the installation of a Pending with NoReplace), "rename" and
	// "syncdir".
	Op string
	// Path is the target the step works for, as given.
	Path string
}

// Options tune [Replace], [WriteFile] and [NewPending]. The zero value
// is what production code uses.
type Options struct {
	// Step, if not nil, is called before each step that changes the
	// file system; an error it returns fails that step as if the system
	// had. Cleanup (removing temporary files and backups, restoring
	// replaced targets) is not reported and cannot be failed. For tests
	// that inject a failure at every step in turn. If nil, nothing is
	// called.
	Step func(Step) error

	// NoReplace makes a [Pending] refuse an existing target (an error
	// wrapping fs.ErrExist), at NewPending and again, atomically, at
	// Commit: a private key must never replace another silently. If
	// false, an existing target is replaced. Replace and WriteFile
	// ignore it.
	NoReplace bool
}

func (o *Options) step(op, path string) error {
	if o == nil || o.Step == nil {
		return nil
	}
	return o.Step(Step{Op: op, Path: path})
}
