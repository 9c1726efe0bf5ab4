package libvirttls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/kvmpki/kvmpki/internal/safefs"
)

// ChangeKind is what a [Change] does.
type ChangeKind int

const (
	// ChangeMkdir creates a directory, or fixes the mode or owner of one.
	ChangeMkdir ChangeKind = iota + 1
	// ChangeFile creates or replaces a file (content, mode or owner).
	ChangeFile
	// ChangeLink creates or replaces a symbolic link.
	ChangeLink
	// ChangeConfig rewrites a configuration file with edited settings.
	ChangeConfig
)

func (k ChangeKind) String() string {
	switch k {
	case ChangeMkdir:
		return "mkdir"
	case ChangeFile:
		return "write"
	case ChangeLink:
		return "symlink"
	case ChangeConfig:
		return "edit"
	}
	return "ChangeKind(" + fmt.Sprint(int(k)) + ")"
}

// Change is one step of a [Plan].
type Change struct {
	Kind ChangeKind
	// Path is the host path (/etc/pki/...); the file is at
	// Config.DiskPath(Path).
	Path string
	// Mode and Owner ("user:group") are what the file or directory will
	// have. For links, Mode is 0.
	Mode  fs.FileMode
	Owner string
	// LinkTarget is the target of a ChangeLink change.
	LinkTarget string
	// Secret marks a private key, whose content is never shown.
	Secret bool

	diskPath  string
	before    fileState
	after     entry
	oldConfig []byte // ChangeConfig: content before
}

// Action is a service step that makes libvirtd use the new files, such as
// restarting it or reloading its TLS credentials.
type Action struct {
	// Command is the program and its arguments.
	Command []string
	// Why says what the action is for.
	Why string
	// Run, if set, carries the action out in the calling process and
	// Command only describes it (for Diff and logs); [ExecAction] calls
	// Run instead of running Command. Nil for plain commands.
	Run func(ctx context.Context) error
}

// fileState is what was on disk at a path when the plan was made.
type fileState struct {
	exists bool
	isDir  bool
	link   string // symlink target, when the path is a link
	data   []byte
	mode   fs.FileMode
	uid    int
	gid    int
}

// readState returns the state of diskPath, without following a final
// symlink. The directories on the way are resolved as the system does;
// Apply uses readStateAt instead.
func readState(diskPath string) (fileState, error) {
	dir, err := safefs.OpenRoot(filepath.Dir(diskPath))
	if errors.Is(err, fs.ErrNotExist) {
		return fileState{}, nil
	}
	if err != nil {
		return fileState{}, fmt.Errorf("libvirttls: %w", err)
	}
	defer dir.Close()
	return readStateAt(dir, filepath.Base(diskPath))
}

// errNotDir: a path's ancestor is not a directory.
var errNotDir = syscall.ENOTDIR

// readStateAt returns the state of rel beneath dir, following no
// symbolic link (a final one is described, an earlier one is an error
// wrapping safefs.ErrSymlink).
func readStateAt(dir *safefs.Dir, rel string) (fileState, error) {
	fi, err := dir.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return fileState{}, nil
	}
	if err != nil {
		return fileState{}, fmt.Errorf("libvirttls: %w", err)
	}
	st := fileState{exists: true, mode: fi.Mode().Perm(), uid: -1, gid: -1}
	if uid, gid, ok := safefs.FileOwner(fi); ok {
		st.uid, st.gid = uid, gid
	}
	disk := dir.Name() + "/" + rel
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		st.link, err = dir.Readlink(rel)
		if err != nil {
			return fileState{}, fmt.Errorf("libvirttls: %w", err)
		}
		st.mode = 0
	case fi.IsDir():
		st.isDir = true
	case fi.Mode().IsRegular():
		fh, err := dir.Open(rel)
		if err != nil {
			return fileState{}, fmt.Errorf("libvirttls: %w", err)
		}
		defer fh.Close()
		st.data, err = io.ReadAll(io.LimitReader(fh, maxConfigSize+1))
		if err != nil {
			return fileState{}, fmt.Errorf("libvirttls: reading %s: %w", disk, err)
		}
		if len(st.data) > maxConfigSize {
			return fileState{}, fmt.Errorf("libvirttls: %s exceeds %d bytes", disk, maxConfigSize)
		}
	default:
		return fileState{}, fmt.Errorf("libvirttls: %s is neither a file, a directory nor a link", disk)
	}
	return st, nil
}

// equal reports whether the state already is what e wants.
func (st fileState) equal(e entry) bool {
	if !st.exists || st.uid != e.owner.uid || st.gid != e.owner.gid {
		return false
	}
	switch {
	case e.dir:
		return st.isDir && st.mode == e.mode
	case e.link != "":
		return st.link == e.link
	default:
		return !st.isDir && st.link == "" && st.mode == e.mode && bytes.Equal(st.data, e.data)
	}
}

// sameAs reports whether two states are the same, to detect a file that
// changed between planning and applying.
func (st fileState) sameAs(other fileState) bool {
	return st.exists == other.exists && st.isDir == other.isDir && st.link == other.link &&
		st.mode == other.mode && st.uid == other.uid && st.gid == other.gid && bytes.Equal(st.data, other.data)
}

// ErrStalePlan is returned by [Plan.Apply] when a file changed after the
// plan was made: make a new plan.
var ErrStalePlan = errors.New("libvirttls: files changed since the plan was made")
