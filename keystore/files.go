package keystore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/kvmpki/kvmpki/internal/safefs"
)

// fileSystem is told each step of a write (see safefs.Options.Step), so
// that tests can make each step fail in turn. osFS, the real one, fails
// none.
type fileSystem interface {
	step(safefs.Step) error
}

type osFS struct{}

func (osFS) step(safefs.Step) error { return nil }

// fileWrite is one file of a set written together.
type fileWrite struct {
	name string // base name in the directory
	data []byte
	mode fs.FileMode
}

// writeFiles replaces the files of set in dir all or nothing, as far as a
// file system allows (safefs.Replace): every file is first written to a
// temporary file next to its target (same directory, so rename is
// atomic), chmod-ed, synced and closed. Only when all of them are on disk
// is each existing target hard-linked to a backup name and the
// temporaries renamed over the targets. If a rename fails, the targets
// already replaced are restored from their backups (or removed, if they
// did not exist). Any failure up to the last rename thus leaves the
// previous files in place; only a crash between two renames can mix old
// and new files. A failure to sync the directory afterwards is reported,
// but the new files are then in place. A symbolic link at a target is
// replaced, never written through.
func writeFiles(fsys fileSystem, dir string, set []fileWrite) error {
	d, err := safefs.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	defer d.Close()
	entries := make([]safefs.Entry, len(set))
	for i, f := range set {
		entries[i] = safefs.Entry{Dir: d, Path: f.name, Data: f.data, Mode: f.mode}
	}
	if err := safefs.Replace(entries, &safefs.Options{Step: fsys.step}); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	return nil
}

// readFileLimited reads a file of at most limit bytes.
func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("keystore: reading %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrTooLarge, path, limit)
	}
	return data, nil
}

// isNotExist reports whether err says a file is missing.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
