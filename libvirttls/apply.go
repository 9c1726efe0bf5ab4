package libvirttls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// ExecAction runs a.Command, for [ApplyOptions.RunAction] on a real host.
func ExecAction(ctx context.Context, a Action) error {
	if len(a.Command) == 0 {
		return errors.New("libvirttls: empty action")
	}
	out, err := exec.CommandContext(ctx, a.Command[0], a.Command[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("libvirttls: %s: %w: %s", strings.Join(a.Command, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// staged is a change whose new content waits in a temporary file.
type staged struct {
	ch      *Change
	tmp     string // the new file or link, next to the target
	backup  string // a hard link to the old file, once renamed over
	renamed bool
}

// Apply carries out the plan: it creates missing directories, writes
// every new file and link next to its target, then renames them into
// place. If anything fails, the files already renamed are restored and the
// temporary files removed, so the old configuration stays whole; the
// error says what failed. Apply returns an error wrapping [ErrStalePlan],
// and changes nothing, when a file changed since the plan was made.
//
// After the files, the actions run through opts.RunAction, if set. A
// failed action leaves the new files in place (they are consistent) and
// returns its error.
func (p *Plan) Apply(ctx context.Context, opts *ApplyOptions) error {
	if opts == nil {
		opts = &ApplyOptions{}
	}
	for i := range p.Changes {
		ch := &p.Changes[i]
		if err := checkAncestors(p.root, ch.Path); err != nil {
			return fmt.Errorf("%w: %w", ErrStalePlan, err)
		}
		now, err := readState(ch.diskPath)
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
	dirsDone, err := p.applyDirs()
	if err != nil {
		return errors.Join(err, p.undoDirs(dirsDone))
	}
	if err := p.applyFiles(ctx, opts.Logger); err != nil {
		return errors.Join(err, p.undoDirs(dirsDone))
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

// applyDirs creates or fixes the directories, parents first, and returns
// those it touched.
func (p *Plan) applyDirs() ([]*Change, error) {
	var done []*Change
	for i := range p.Changes {
		ch := &p.Changes[i]
		if ch.Kind != ChangeMkdir {
			continue
		}
		if !ch.before.exists {
			if err := os.Mkdir(ch.diskPath, ch.after.mode); err != nil {
				return done, fmt.Errorf("libvirttls: %w", err)
			}
		}
		done = append(done, ch)
		if err := setOwnerMode(ch.diskPath, ch.after.owner, ch.after.mode); err != nil {
			return done, err
		}
	}
	return done, nil
}

// undoDirs removes the directories applyDirs created and restores the
// mode and owner of those it changed, children first.
func (p *Plan) undoDirs(done []*Change) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		ch := done[i]
		if !ch.before.exists {
			errs = append(errs, os.Remove(ch.diskPath))
			continue
		}
		errs = append(errs, os.Lchown(ch.diskPath, ch.before.uid, ch.before.gid), os.Chmod(ch.diskPath, ch.before.mode))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("libvirttls: undoing directories: %w", err)
	}
	return nil
}

func setOwnerMode(p string, w owner, mode os.FileMode) error {
	if err := os.Lchown(p, w.uid, w.gid); err != nil {
		return fmt.Errorf("libvirttls: %w", err)
	}
	if err := os.Chmod(p, mode); err != nil {
		return fmt.Errorf("libvirttls: %w", err)
	}
	return nil
}

// applyFiles stages every file and link, then renames them into place,
// rolling back on failure.
func (p *Plan) applyFiles(ctx context.Context, log *slog.Logger) (err error) {
	var work []*staged
	defer func() {
		if err != nil {
			err = errors.Join(err, rollback(work))
		}
		// Temporary files and backups go either way.
		for _, s := range work {
			if s.tmp != "" && !s.renamed {
				_ = os.Remove(s.tmp)
			}
			if s.backup != "" {
				_ = os.Remove(s.backup)
			}
		}
	}()
	for i := range p.Changes {
		ch := &p.Changes[i]
		if ch.Kind == ChangeMkdir {
			continue
		}
		s := &staged{ch: ch}
		work = append(work, s)
		if ch.Kind == ChangeLink {
			s.tmp, err = stageLink(ch.diskPath, ch.after.link, ch.after.owner)
		} else {
			s.tmp, err = stageFile(ch.diskPath, ch.after.data, ch.after.mode, ch.after.owner.uid, ch.after.owner.gid)
		}
		if err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, s := range work {
		if s.ch.before.exists {
			s.backup = tempName(s.ch.diskPath, "old")
			if err := os.Link(s.ch.diskPath, s.backup); err != nil {
				s.backup = ""
				return fmt.Errorf("libvirttls: keeping the old %s: %w", s.ch.Path, err)
			}
		}
		if err := p.rename(s.tmp, s.ch.diskPath); err != nil {
			return fmt.Errorf("libvirttls: installing %s: %w", s.ch.Path, err)
		}
		s.renamed = true
		if log != nil {
			log.Info("libvirttls: installed", "kind", s.ch.Kind.String(), "path", s.ch.Path, "mode", fmt.Sprintf("%04o", s.ch.Mode), "owner", s.ch.Owner)
		}
	}
	syncDirs(work)
	return nil
}

// rollback puts back the old files of the renamed changes, newest first.
func rollback(work []*staged) error {
	var errs []error
	for i := len(work) - 1; i >= 0; i-- {
		s := work[i]
		if !s.renamed {
			continue
		}
		if s.backup != "" {
			errs = append(errs, os.Rename(s.backup, s.ch.diskPath))
			s.backup = ""
		} else {
			errs = append(errs, os.Remove(s.ch.diskPath))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("libvirttls: rollback incomplete: %w", err)
	}
	return nil
}

// stageLink creates a symbolic link to target next to p.
func stageLink(p, target string, w owner) (string, error) {
	for range 10 {
		tmp := tempName(p, "new")
		err := os.Symlink(target, tmp)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("libvirttls: %w", err)
		}
		if err := os.Lchown(tmp, w.uid, w.gid); err != nil {
			_ = os.Remove(tmp)
			return "", fmt.Errorf("libvirttls: %w", err)
		}
		return tmp, nil
	}
	return "", fmt.Errorf("libvirttls: no free temporary name next to %s", p)
}

// tempName returns an unused-looking name next to p.
func tempName(p, what string) string {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".kvmpki-"+what+"-*")
	if err != nil {
		return p + ".kvmpki-" + what
	}
	name := f.Name()
	f.Close()
	_ = os.Remove(name) // the name only; os.Link and os.Symlink need it free
	return name
}

// syncDirs flushes the directories holding the renamed files, so the
// renames survive a crash; failures are ignored (the data is written).
func syncDirs(work []*staged) {
	seen := map[string]bool{}
	for _, s := range work {
		d := filepath.Dir(s.ch.diskPath)
		if seen[d] {
			continue
		}
		seen[d] = true
		if fh, err := os.Open(d); err == nil {
			_ = fh.Sync()
			fh.Close()
		}
	}
}
