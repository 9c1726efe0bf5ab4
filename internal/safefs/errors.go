package safefs

import "errors"

var (
	// ErrSymlink: a symbolic link was met where a directory or file was
	// expected; it was not followed.
	ErrSymlink = errors.New("symbolic link not followed")
	// ErrNotBeneath: the path is absolute, holds "..", or otherwise
	// leaves the directory it is relative to.
	ErrNotBeneath = errors.New("path is not beneath its directory")
	// ErrNotReplaceable: the target of a write exists and is neither a
	// regular file nor a symbolic link (a directory, device or pipe).
	ErrNotReplaceable = errors.New("not a regular file or a symbolic link")
)
