package libvirttls

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os/exec"
	"strings"

	"github.com/kvmpki/kvmpki/internal/safefs"
)

// ApplyOptions tune [Plan.Apply]. The zero value applies the file changes
// and runs no action.
type ApplyOptions struct {
	// RunAction runs one service action after the files are in place.
	// If nil, actions are not run: the caller runs them (they are in
	// Plan.Actions and Plan.Diff). ExecAction runs them as commands.
	RunAction func(ctx context.Context, a Action) error

	// Logger, if set, receives one record per applied change (paths and
	// modes, never contents).
	Logger *slog.Logger
}

// ExecAction runs a.Command (or a.Run, if set), for
// [ApplyOptions.RunAction] on a real host.
func ExecAction(ctx context.Context, a Action) error {
	if a.Run != nil {
		return a.Run(ctx)
	}
	if len(a.Command) == 0 {
		return errors.New("libvirttls: empty action")
	}
	out, err := exec.CommandContext(ctx, a.Command[0], a.Command[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("libvirttls: %s: %w: %s", strings.Join(a.Command, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// stepHook is called before each file-system step of Apply; tests use it
// to fail one (see safefs.Options.Step). Nil in production.
type stepHook = func(safefs.Step) error

// Apply carries out the plan: it creates missing directories, writes
// every new file and link next to its target, then renames them into
// place. If anything fails, the files already renamed are restored and the
// temporary files removed, so the old configuration stays whole; the
// error says what failed. Apply returns an error wrapping [ErrStalePlan],
// and changes nothing, when a file changed since the plan was made, or
// when the root or a directory under it is no longer the one planned
// (such as a directory replaced by a symbolic link).
//
// Every path is resolved beneath the root without following a symbolic
// link in any position (openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS
// where the kernel has it, else one directory at a time with
// O_NOFOLLOW), and every file and directory is created, renamed, chmod-ed
// and chown-ed through the descriptor of its directory: a user who can
// write under the root, or an ancestor of it, even while Apply runs,
// cannot make it write or chmod anything outside the root. A link on the
// way found before any change makes the plan stale ([ErrStalePlan]); one
// that appears while Apply runs fails it, and the changes made are rolled
// back. A link where a file or link of the plan goes is replaced, not
// followed.
//
// After the files, the actions run through opts.RunAction, if set. A
// failed action leaves the new files in place (they are consistent) and
// returns its error.
func (p *Plan) Apply(ctx context.Context, opts *ApplyOptions) error {
	if opts == nil {
		opts = &ApplyOptions{}
	}
	if p.groupErr != nil {
		return p.groupErr
	}
	root, err := safefs.OpenRoot(p.root)
	if err != nil {
		return fmt.Errorf("libvirttls: %w", err)
	}
	defer root.Close()
	// A user who can write an ancestor of the root could have put another
	// directory in its place since the plan was made.
	if fi, err := root.Stat(); err != nil || !safefs.SameFile(fi, p.rootInfo) {
		return fmt.Errorf("%w: %s is not the directory planned", ErrStalePlan, p.root)
	}
	for i := range p.Changes {
		ch := &p.Changes[i]
		now, err := readStateAt(root, relPath(ch.Path))
		if errors.Is(err, safefs.ErrSymlink) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
			return fmt.Errorf("%w: %w", ErrStalePlan, err)
		}
		if err != nil {
			return err
		}
		if !now.sameAs(ch.before) {
			return fmt.Errorf("%w: %s", ErrStalePlan, ch.Path)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dirsDone, err := p.applyDirs(root)
	if err != nil {
		return errors.Join(err, p.undoDirs(root, dirsDone))
	}
	if err := ctx.Err(); err != nil {
		return errors.Join(err, p.undoDirs(root, dirsDone))
	}
	if err := p.applyFiles(root, opts.Logger); err != nil {
		return errors.Join(err, p.undoDirs(root, dirsDone))
	}
	if opts.RunAction == nil {
		return nil
	}
	for _, a := range p.Actions {
		if err := opts.RunAction(ctx, a); err != nil {
			return fmt.Errorf("libvirttls: files applied, but action %q failed: %w", strings.Join(a.Command, " "), err)
		}
		if opts.Logger != nil {
			opts.Logger.Info("libvirttls: ran action", "command", strings.Join(a.Command, " "))
		}
	}
	return nil
}

// relPath turns a host path (/etc/pki/...) into a path relative to the
// root.
func relPath(hostPath string) string { return strings.TrimLeft(hostPath, "/") }

// applyDirs creates or fixes the directories, parents first, and returns
// those it touched. Mode and owner are set through the directory's
// descriptor.
func (p *Plan) applyDirs(root *safefs.Dir) ([]*Change, error) {
	var done []*Change
	for i := range p.Changes {
		ch := &p.Changes[i]
		if ch.Kind != ChangeMkdir {
			continue
		}
		rel := relPath(ch.Path)
		if !ch.before.exists {
			if err := p.step("mkdir", ch.Path); err != nil {
				return done, err
			}
			if err := root.Mkdir(rel, ch.after.mode); err != nil {
				return done, fmt.Errorf("libvirttls: %w", err)
			}
		}
		done = append(done, ch)
		if err := p.step("chmod", ch.Path); err != nil {
			return done, err
		}
		if err := setDirOwnerMode(root, rel, ch.after.owner.uid, ch.after.owner.gid, ch.after.mode); err != nil {
			return done, err
		}
	}
	return done, nil
}

func (p *Plan) step(op, hostPath string) error {
	if p.stepHook == nil {
		return nil
	}
	return p.stepHook(safefs.Step{Op: op, Path: hostPath})
}

// undoDirs removes the directories applyDirs created and restores the
// mode and owner of those it changed, children first.
func (p *Plan) undoDirs(root *safefs.Dir, done []*Change) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		ch := done[i]
		rel := relPath(ch.Path)
		if !ch.before.exists {
			errs = append(errs, root.Remove(rel))
			continue
		}
		errs = append(errs, setDirOwnerMode(root, rel, ch.before.uid, ch.before.gid, ch.before.mode))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("libvirttls: undoing directories: %w", err)
	}
	return nil
}

// setDirOwnerMode opens the directory rel beneath root (no link
// followed) and sets its owner and mode through the descriptor.
func setDirOwnerMode(root *safefs.Dir, rel string, uid, gid int, mode fs.FileMode) error {
	d, err := root.OpenDir(rel)
	if err != nil {
		return fmt.Errorf("libvirttls: %w", err)
	}
	defer d.Close()
	if err := errors.Join(d.Chown(uid, gid), d.Chmod(mode)); err != nil {
		return fmt.Errorf("libvirttls: %w", err)
	}
	return nil
}

// applyFiles writes every file and link next to its target, then renames
// them all into place, rolling back on failure (safefs.Replace).
func (p *Plan) applyFiles(root *safefs.Dir, log *slog.Logger) error {
	var entries []safefs.Entry
	var changes []*Change
	for i := range p.Changes {
		ch := &p.Changes[i]
		if ch.Kind == ChangeMkdir {
			continue
		}
		e := safefs.Entry{Dir: root, Path: relPath(ch.Path), Owner: &safefs.Owner{UID: ch.after.owner.uid, GID: ch.after.owner.gid}}
		if ch.Kind == ChangeLink {
			e.Link = ch.after.link
		} else {
			e.Data, e.Mode = ch.after.data, ch.after.mode
		}
		entries = append(entries, e)
		changes = append(changes, ch)
	}
	if err := safefs.Replace(entries, &safefs.Options{Step: p.stepHook}); err != nil {
		return fmt.Errorf("libvirttls: %w", err)
	}
	if log != nil {
		for _, ch := range changes {
			log.Info("libvirttls: installed", "kind", ch.Kind.String(), "path", ch.Path, "mode", fmt.Sprintf("%04o", ch.Mode), "owner", ch.Owner)
		}
	}
	return nil
}
