//go:build unix

package safefs

import (
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Pending is a file claimed before its content is known: its temporary
// file already exists next to the target, so a directory that cannot be
// written fails NewPending, not Commit. Commit fills it and renames it
// over the target; Abort removes it.
type Pending struct {
	dir *Dir
	t   *target
	f   *os.File
	o   Options
}

// NewPending claims path for a file of mode perm (0 means 0600). The
// directory part of path is resolved as the system does; a symbolic link
// at path is replaced at Commit, never followed. With o.NoReplace, an
// existing path is refused now and at Commit.
func NewPending(path string, perm fs.FileMode, o *Options) (*Pending, error) {
	d, err := OpenRoot(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	p := &Pending{dir: d}
	if o != nil {
		p.o = *o
	}
	p.t, err = openTarget(&Entry{Dir: d, Path: filepath.Base(path), Mode: perm})
	if err == nil && p.o.NoReplace {
		if _, lerr := lstatAt(p.t.dirfd, p.t.name); lerr == nil {
			err = p.t.err("create", unix.EEXIST)
		}
	}
	if err == nil {
		p.f, err = p.t.createTemp(&p.o)
	}
	if err != nil {
		if p.t != nil {
			p.t.cleanup()
		}
		d.Close()
		return nil, err
	}
	return p, nil
}

// SameTarget reports whether p and q claim the same path.
func (p *Pending) SameTarget(q *Pending) bool {
	a, err1 := p.dir.Stat()
	b, err2 := q.dir.Stat()
	return err1 == nil && err2 == nil && SameFile(a, b) && p.t.name == q.t.name
}

// Commit writes data, syncs it and renames it over the target (with
// NoReplace, links it there, failing if the target appeared meanwhile),
// then syncs the directory. The Pending is finished either way.
func (p *Pending) Commit(data []byte) error {
	if p.f == nil {
		return p.t.err("write", fs.ErrClosed)
	}
	defer p.Abort()
	f := p.f
	p.f = nil
	if err := p.t.fill(f, data, &p.o); err != nil {
		return err
	}
	if p.o.NoReplace {
		if err := p.o.step("link", p.t.e.Path); err != nil {
			return p.t.err("link", err)
		}
		if err := unix.Linkat(p.t.dirfd, p.t.tmp, p.t.dirfd, p.t.name, 0); err != nil {
			return p.t.err("link", err)
		}
		// The target is in place; the temporary name goes in cleanup.
		p.t.placed = true
	} else if err := p.t.install(&p.o); err != nil {
		return err
	}
	return syncDirs([]*target{p.t}, &p.o)
}

// Abort removes the temporary file, unless Commit did, and releases the
// directory. It is safe to call more than once, and after Commit.
func (p *Pending) Abort() {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
	if p.t != nil {
		p.t.cleanup()
	}
	p.dir.Close()
}
