// Package libvirtconf reads and edits libvirt's configuration files
// (libvirtd.conf, qemu.conf, virtproxyd.conf, libvirt.conf, ...) without
// losing a byte the edit does not need to change.
//
// [Parse] reads libvirt's configuration syntax (virconf: "key = value"
// statements ended by a line break or ';', "#" comments, strings, integers,
// lists) as libvirt 9.0's parser does, and refuses what it refuses with a
// [*SyntaxError] naming the line. [Config.Set] edits a parsed file in
// place: it replaces the value of an active setting, else uncomments the
// file's commented default ("#key = ..."), else appends the setting. Every
// other byte is kept, and setting a value twice gives the same bytes.
// Strings libvirt cannot hold (quotes, line breaks, NULs; the syntax has
// no escapes) are refused with [ErrInvalidValue], never written. [Edit]
// applies a list of [Setting]s to a file's bytes, and [UnifiedDiff] shows
// what an edit changed.
//
// The package knows no key's meaning: which settings secure a host is
// the business of its callers (libvirttls, migration).
//
// Input is bounded: files over 1 MiB and lists nested over 32 deep are
// refused, so a hostile file costs at most linear work.
package libvirtconf
