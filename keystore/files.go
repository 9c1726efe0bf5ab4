package keystore

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// fileSystem is what the writers need from the operating system, so that
// tests can make each step fail in turn.
type fileSystem interface {
	CreateTemp(dir, pattern string) (tempFile, error)
	Rename(oldpath, newpath string) error
	Link(oldname, newname string) error
	Remove(name string) error
	SyncDir(dir string) error
}

type tempFile interface {
	io.Writer
	Name() string
	Chmod(fs.FileMode) error
	Sync() error
	Close() error
}

type osFS struct{}

func (osFS) CreateTemp(dir, pattern string) (tempFile, error) { return os.CreateTemp(dir, pattern) }
func (osFS) Rename(oldpath, newpath string) error             { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                         { return os.Remove(name) }
func (osFS) Link(oldname, newname string) error               { return os.Link(oldname, newname) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// fileWrite is one file of a set written together.
type fileWrite struct {
	name string // base name in the directory
	data []byte
	mode fs.FileMode
}

// writeFiles replaces the files of set in dir all or nothing, as far as a
// file system allows: every file is first written to a temporary file next
// to its target (same directory, so rename is atomic), chmod-ed, synced and
// closed. Only when all of them are on disk is each existing target
// hard-linked to a backup name and the temporaries renamed over the
// targets. If a rename fails, the targets already replaced are restored
// from their backups (or removed, if they did not exist). Any failure up to
// the last rename thus leaves the previous files in place; only a crash
// between two renames can mix old and new files. A failure to sync the
// directory afterwards is reported, but the new files are then in place.
func writeFiles(fsys fileSystem, dir string, set []fileWrite) (err error) {
	var temps, backups []string
	defer func() {
		for _, t := range temps {
			if t != "" {
				_ = fsys.Remove(t)
			}
		}
		for _, b := range backups {
			if b != "" {
				_ = fsys.Remove(b)
			}
		}
	}()
	for _, f := range set {
		name, err := writeTemp(fsys, dir, f)
		temps = append(temps, name)
		if err != nil {
			return fmt.Errorf("keystore: writing %s: %w", f.name, err)
		}
	}
	for _, f := range set {
		b, err := backup(fsys, dir, f.name)
		backups = append(backups, b)
		if err != nil {
			return fmt.Errorf("keystore: keeping the old %s: %w", f.name, err)
		}
	}
	for i, f := range set {
		if err := fsys.Rename(temps[i], filepath.Join(dir, f.name)); err != nil {
			restore(fsys, dir, set[:i], backups[:i])
			return fmt.Errorf("keystore: replacing %s: %w", f.name, err)
		}
		temps[i] = ""
	}
	if err := fsys.SyncDir(dir); err != nil {
		// Every file is in place; the directory entry may not be durable
		// yet, but the old files are gone from it.
		return fmt.Errorf("keystore: syncing %s: %w", dir, err)
	}
	return nil
}

// backup hard-links dir/name to a fresh backup name and returns that name,
// or "" when there is no such file.
func backup(fsys fileSystem, dir, name string) (string, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	b := filepath.Join(dir, "."+name+".bak-"+hex.EncodeToString(r[:]))
	if err := fsys.Link(filepath.Join(dir, name), b); err != nil {
		if isNotExist(err) {
			return "", nil
		}
		return "", err
	}
	return b, nil
}

// restore undoes the renames of set: each target goes back to its backup,
// or is removed if it had none. The backups are consumed.
func restore(fsys fileSystem, dir string, set []fileWrite, backups []string) {
	for i, f := range set {
		target := filepath.Join(dir, f.name)
		if backups[i] == "" {
			_ = fsys.Remove(target)
			continue
		}
		if fsys.Rename(backups[i], target) == nil {
			backups[i] = ""
		}
	}
}

// writeTemp writes f to a new temporary file in dir and returns its name.
// The file is created 0600 by os.CreateTemp and gets f.mode before any
// data is written.
func writeTemp(fsys fileSystem, dir string, f fileWrite) (string, error) {
	tmp, err := fsys.CreateTemp(dir, "."+f.name+".tmp-*")
	if err != nil {
		return "", err
	}
	name := tmp.Name()
	err = tmp.Chmod(f.mode)
	if err == nil {
		_, err = tmp.Write(f.data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	return name, err
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
