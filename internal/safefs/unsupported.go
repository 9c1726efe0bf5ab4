//go:build !unix

package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
)

var errUnsupported = fmt.Errorf("safe file writes on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Dir is an open directory. This system has none: see the package
// documentation.
type Dir struct{}

func OpenRoot(path string) (*Dir, error) {
	return nil, &fs.PathError{Op: "open", Path: path, Err: errUnsupported}
}

func (d *Dir) Name() string                                 { return "" }
func (d *Dir) Close() error                                 { return nil }
func (d *Dir) OpenDir(string) (*Dir, error)                 { return nil, errUnsupported }
func (d *Dir) Open(string) (*os.File, error)                { return nil, errUnsupported }
func (d *Dir) Lstat(string) (fs.FileInfo, error)            { return nil, errUnsupported }
func (d *Dir) Stat() (fs.FileInfo, error)                   { return nil, errUnsupported }
func (d *Dir) Readlink(string) (string, error)              { return "", errUnsupported }
func (d *Dir) Mkdir(string, fs.FileMode) error              { return errUnsupported }
func (d *Dir) Remove(string) error                          { return errUnsupported }
func (d *Dir) Chmod(fs.FileMode) error                      { return errUnsupported }
func (d *Dir) Chown(int, int) error                         { return errUnsupported }
func (d *Dir) Sync() error                                  { return errUnsupported }
func Replace([]Entry, *Options) error                       { return errUnsupported }
func WriteFile(string, []byte, fs.FileMode, *Options) error { return errUnsupported }
func FileOwner(fs.FileInfo) (uid, gid int, ok bool)         { return -1, -1, false }
func SameFile(a, b fs.FileInfo) bool                        { return os.SameFile(a, b) }

// Pending is a claimed file. This system has none.
type Pending struct{}

func NewPending(string, fs.FileMode, *Options) (*Pending, error) { return nil, errUnsupported }
func (p *Pending) SameTarget(*Pending) bool                      { return false }
func (p *Pending) Commit([]byte) error                           { return errUnsupported }
func (p *Pending) Abort()                                        {}
