package libvirttls

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// systemd units of the monolithic libvirtd (Debian, Ubuntu).
const (
	libvirtdService   = "libvirtd.service"
	libvirtdSocket    = "libvirtd.socket"
	libvirtdTLSSocket = "libvirtd-tls.socket"
	libvirtdTCPSocket = "libvirtd-tcp.socket"
)

// UnitState is what systemd says about one unit.
type UnitState struct {
	// Exists reports that the unit file is installed.
	Exists bool
	// Enabled reports that the unit is enabled: started at boot, or by
	// the unit that wants it (systemctl is-enabled says enabled,
	// enabled-runtime, linked, alias, static, generated, transient...).
	Enabled bool
	// Masked reports that the unit is linked to /dev/null: nothing can
	// start it.
	Masked bool
	// Active reports that the unit runs now (a socket unit listens).
	Active bool
}

// open reports whether the unit serves, or will serve at the next boot.
func (s UnitState) open() bool { return s.Active || (s.Enabled && !s.Masked) }

// Units tells the state of systemd units. [Systemctl] asks the running
// systemd; [UnitFiles] reads the unit files under a root; tests pass a
// fake.
type Units interface {
	UnitState(ctx context.Context, unit string) (UnitState, error)
}

// Systemctl is the [Units] of the running host: "systemctl is-enabled"
// and "systemctl is-active".
type Systemctl struct{}

// UnitState runs systemctl is-enabled and is-active for unit.
func (Systemctl) UnitState(ctx context.Context, unit string) (UnitState, error) {
	enabled, err := systemctlQuery(ctx, "is-enabled", unit)
	if err != nil {
		return UnitState{}, err
	}
	active, err := systemctlQuery(ctx, "is-active", unit)
	if err != nil {
		return UnitState{}, err
	}
	st := UnitState{Exists: enabled != "not-found"}
	switch enabled {
	case "masked", "masked-runtime":
		st.Masked = true
	case "disabled", "not-found", "indirect":
	default:
		// enabled, enabled-runtime, linked, alias, static, generated,
		// transient, and whatever a newer systemd adds: assume it may
		// start.
		st.Enabled = true
	}
	switch active {
	case "inactive", "failed", "maintenance", "unknown":
	default:
		st.Active = true
	}
	return st, nil
}

// systemctlQuery returns the first line systemctl prints for an
// is-enabled or is-active query. These exit non-zero for "disabled" or
// "inactive", so only a run that printed nothing is an error.
func systemctlQuery(ctx context.Context, verb, unit string) (string, error) {
	cmd := exec.CommandContext(ctx, "systemctl", verb, "--", unit)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if line == "" {
		if err == nil {
			err = errors.New("no output")
		}
		return "", fmt.Errorf("libvirttls: systemctl %s %s: %w: %s", verb, unit, err, strings.TrimSpace(stderr.String()))
	}
	return line, nil
}

// UnitFiles is the [Units] of a host that is not running, such as a
// temporary root: it reads the unit files and the links under
// Root/etc/systemd and Root/run/systemd. Active is never set.
type UnitFiles struct {
	// Root is the host's root directory. If empty, "/".
	Root string
}

// UnitState reads unit's files under Root.
func (u UnitFiles) UnitState(_ context.Context, unit string) (UnitState, error) {
	if strings.ContainsAny(unit, "/\x00") || unit == "" || unit == "." || unit == ".." {
		return UnitState{}, fmt.Errorf("libvirttls: invalid unit name %q", unit)
	}
	root := u.Root
	if root == "" {
		root = "/"
	}
	var st UnitState
	for _, dir := range []string{"etc/systemd/system", "run/systemd/system", "usr/local/lib/systemd/system", "lib/systemd/system", "usr/lib/systemd/system"} {
		p := filepath.Join(root, dir, unit)
		if target, err := os.Readlink(p); err == nil && target == os.DevNull {
			st.Masked, st.Exists = true, true
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			st.Exists = true
		}
	}
	// Enabled: a .wants or .requires link names the unit.
	for _, dir := range []string{"etc/systemd/system", "run/systemd/system"} {
		links, err := filepath.Glob(filepath.Join(root, dir, "*.wants", unit))
		if err != nil {
			return UnitState{}, fmt.Errorf("libvirttls: %w", err)
		}
		requires, err := filepath.Glob(filepath.Join(root, dir, "*.requires", unit))
		if err != nil {
			return UnitState{}, fmt.Errorf("libvirttls: %w", err)
		}
		if len(links)+len(requires) > 0 {
			st.Enabled = true
		}
	}
	return st, nil
}

// units returns the Units to ask: Config.Units, else systemctl on a
// real host booted with systemd, else the unit files under Root.
func (o *Config) units() Units {
	if o != nil && o.Units != nil {
		return o.Units
	}
	if o.root() == "/" {
		// sd_booted(3): systemd is running.
		if fi, err := os.Lstat("/run/systemd/system"); err == nil && fi.IsDir() {
			return Systemctl{}
		}
	}
	return UnitFiles{Root: o.root()}
}

// unitStates asks u about each unit.
func unitStates(ctx context.Context, u Units, units ...string) (map[string]UnitState, error) {
	out := make(map[string]UnitState, len(units))
	for _, unit := range units {
		st, err := u.UnitState(ctx, unit)
		if err != nil {
			return nil, err
		}
		out[unit] = st
	}
	return out, nil
}
