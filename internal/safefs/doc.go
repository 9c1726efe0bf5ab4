// Package safefs writes files atomically and resolves paths beneath a
// directory without ever following a symbolic link. It is the one copy of
// these rules in kvmpki: libvirttls, keystore and the examples use it
// instead of their own temporary-file-and-rename code.
//
// # Paths beneath a root
//
// A [Dir] is an open directory. Every path given to its methods is
// relative to it, slash-separated, and resolved component by component
// with no symbolic link followed, in any position: on Linux 5.6 and later
// by one openat2(2) call with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS,
// elsewhere (or when the kernel lacks openat2) by opening each directory
// with O_NOFOLLOW|O_DIRECTORY relative to the previous one. Absolute paths
// and ".." are refused with [ErrNotBeneath]; a symbolic link met on the
// way, the last component included, fails with [ErrSymlink]. Changes to a
// directory's own mode and owner go through its descriptor (fchmod,
// fchown), and files are created, renamed, linked and removed relative to
// the descriptor of their directory (openat, renameat, linkat, unlinkat),
// so a directory swapped for a link after it was opened cannot redirect a
// write: a caller running as root cannot be made to write or chmod a file
// outside the tree it opened by a user who can write inside it.
//
// Symbolic links may still be created ([Entry.Link]): making one is safe,
// following one is what this package never does.
//
// # Atomic writes
//
// [Replace] replaces a set of files and links all or nothing, as far as a
// file system allows: every new file is written to a temporary file next
// to its target (created with O_EXCL|O_NOFOLLOW and mode 0600, given its
// owner and mode through its descriptor, synced and closed), each existing
// target is hard-linked to a backup name, and only then are the
// temporaries renamed over the targets. A failed rename restores the
// targets already replaced; the directories are synced at the end. A
// rename replaces a symbolic link at the target instead of following it.
// [WriteFile] is Replace for one file named by an ordinary path, and
// [Pending] claims a file before its content is known.
//
// Errors are *fs.PathError values naming the path, never the content.
//
// # Compatibility
//
// safefs works on Unix systems; elsewhere every function returns an error
// wrapping [errors.ErrUnsupported].
package safefs
