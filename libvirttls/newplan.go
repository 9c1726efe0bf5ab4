package libvirttls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/kvmpki/kvmpki/libvirtconf"
)

// Plan is the set of changes that secures a host, made by [NewPlan],
// shown by [Plan.Diff] and carried out by [Plan.Apply].
type Plan struct {
	// Changes are the directories, files, links and configuration edits,
	// in the order they are applied. A host already in the wanted state
	// has none.
	Changes []Change
	// Actions are the service steps to run after the files are in place.
	Actions []Action

	root      string
	rootInfo  fs.FileInfo // the root when planned; Apply checks it is the same
	rootOwner owner
	stepHook  stepHook // nil; tests fail one file-system step of Apply

	// groupErr, when set, is why QEMU's group could not be resolved for
	// the real host: Diff says so and Apply refuses the plan.
	groupErr error
}

// Empty reports whether the host needs no change.
func (p *Plan) Empty() bool { return len(p.Changes) == 0 && len(p.Actions) == 0 }

// NewPlan verifies c (see [Credentials.Verify]) and compares the state a
// secured host needs with the files under o.Root: the PKI layout, the
// edits of libvirtd.conf and qemu.conf, and the service actions (see
// [Plan.Actions]). It changes nothing on disk. A missing libvirtd.conf or
// qemu.conf is planned as a new file holding only the settings. If o is
// nil, the zero Config is used.
//
// NewPlan refuses, with an error wrapping [ErrInsecureConfig], to plan a
// configuration that would still be insecure once edited, such as a
// tls_priority enabling TLS 1.0 that ExtraLibvirtd does not replace. An
// auth_tcp = "none" (which earlier versions of this package wrote) is
// set back to libvirt's default, "sasl".
func NewPlan(ctx context.Context, c *Credentials, o *Config) (*Plan, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil Credentials", ErrCredentialsMissing)
	}
	if o == nil {
		o = &Config{}
	}
	if _, err := c.Verify(o.now()); err != nil {
		return nil, err
	}
	rootInfo, err := os.Stat(o.root())
	if err != nil || !rootInfo.IsDir() {
		return nil, fmt.Errorf("libvirttls: root %s is not a directory", o.root())
	}
	p := &Plan{root: o.root(), rootInfo: rootInfo}
	if o.Install == InstallSymlinks {
		// Links to files that are not these credentials would dangle or,
		// worse, install something else.
		for name, want := range map[string][]byte{AgentCACert: c.CACert, AgentCert: c.Cert, AgentKey: c.Key} {
			hostPath := path.Join(o.credentialsDir(), name)
			got, err := o.readHostFile(hostPath)
			if err != nil || !bytes.Equal(got, want) {
				return nil, fmt.Errorf("libvirttls: InstallSymlinks needs the credentials at %s under the root: %s is missing or differs", o.credentialsDir(), hostPath)
			}
		}
	}

	libvirtdState, err := readState(o.DiskPath(LibvirtdConfPath))
	if err != nil {
		return nil, err
	}
	qemuState, err := readState(o.DiskPath(QEMUConfPath))
	if err != nil {
		return nil, err
	}
	var qemuConf *libvirtconf.Config
	if qemuState.exists {
		if qemuConf, err = libvirtconf.Parse(qemuState.data); err != nil {
			return nil, inFile(err, QEMUConfPath)
		}
	}
	group := o.qemuGroup(qemuConf)
	rootOwner, qemuOwner, err := o.owners(group)
	if errors.Is(err, ErrQEMUGroupMissing) {
		// It matters only when the plan is applied: a dry run still
		// shows what would change.
		p.groupErr = err
		rootOwner, qemuOwner = owner{uid: 0, gid: 0, user: "root", grp: "root"}, owner{uid: 0, gid: -1, user: "root", grp: group + " (missing)"}
	} else if err != nil {
		return nil, err
	}
	p.rootOwner = rootOwner
	entries, err := o.layout(c, rootOwner, qemuOwner)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := p.add(o, e); err != nil {
			return nil, err
		}
	}

	libvirtdSettings, err := o.LibvirtdSettings(len(c.CRL) > 0)
	if err != nil {
		return nil, err
	}
	if libvirtdState.exists {
		if conf, err := libvirtconf.Parse(libvirtdState.data); err == nil {
			if v, ok := conf.Get("auth_tcp"); ok && v.Equal(libvirtconf.StringValue("none")) {
				libvirtdSettings = append([]libvirtconf.Setting{{Key: "auth_tcp", Value: libvirtconf.StringValue("sasl")}}, libvirtdSettings...)
			}
		}
	}
	configChanged := false
	for _, cf := range []struct {
		hostPath string
		state    fileState
		settings []libvirtconf.Setting
		insecure func(*libvirtconf.Config) []error
	}{
		{LibvirtdConfPath, libvirtdState, libvirtdSettings, insecureLibvirtd},
		{QEMUConfPath, qemuState, o.QEMUSettings(), insecureQEMU},
	} {
		changed, err := p.addConfig(o, cf.hostPath, cf.state, cf.settings, rootOwner, cf.insecure)
		if err != nil {
			return nil, err
		}
		configChanged = configChanged || changed
	}
	if p.Actions, err = o.actions(ctx, configChanged, len(p.Changes) > 0); err != nil {
		return nil, err
	}
	p.Actions = append(p.Actions, reloadVNCActions(p.Changes)...)
	return p, nil
}

// add appends the change e needs, if any.
func (p *Plan) add(o *Config, e entry) error {
	if p.planned(e.hostPath) {
		return nil
	}
	if err := checkAncestors(o.root(), e.hostPath); err != nil {
		return err
	}
	if err := p.addParents(o, path.Dir(e.hostPath)); err != nil {
		return err
	}
	disk := o.DiskPath(e.hostPath)
	st, err := readState(disk)
	if err != nil {
		return err
	}
	if st.equal(e) {
		return nil
	}
	ch := Change{Path: e.hostPath, Mode: e.mode, Owner: e.owner.String(), Secret: e.secret,
		LinkTarget: e.link, diskPath: disk, before: st, after: e}
	switch {
	case e.dir:
		if st.exists && !st.isDir {
			return fmt.Errorf("libvirttls: %s exists and is not a directory", disk)
		}
		ch.Kind = ChangeMkdir
	case st.isDir:
		return fmt.Errorf("libvirttls: %s is a directory", disk)
	case e.link != "":
		ch.Kind = ChangeLink
	default:
		ch.Kind = ChangeFile
	}
	p.Changes = append(p.Changes, ch)
	return nil
}

func (p *Plan) planned(hostPath string) bool {
	for _, ch := range p.Changes {
		if ch.Path == hostPath {
			return true
		}
	}
	return false
}

// addParents plans the missing ancestors of a path (0755 root), such as
// /etc in a fresh temporary root.
func (p *Plan) addParents(o *Config, hostPath string) error {
	if hostPath == "/" || hostPath == "." || p.planned(hostPath) || exists(o.DiskPath(hostPath)) {
		return nil
	}
	return p.add(o, entry{hostPath: hostPath, dir: true, mode: publicDirMode, owner: p.rootOwner})
}

// addConfig plans the edit of one configuration file and reports whether
// it changes. It refuses an edited file that insecure finds fault with.
func (p *Plan) addConfig(o *Config, hostPath string, st fileState, settings []libvirtconf.Setting, rootOwner owner, insecure func(*libvirtconf.Config) []error) (bool, error) {
	if st.exists && (st.isDir || st.link != "") {
		return false, fmt.Errorf("libvirttls: %s is not a regular file", o.DiskPath(hostPath))
	}
	if err := checkAncestors(o.root(), hostPath); err != nil {
		return false, err
	}
	edited, err := libvirtconf.Edit(st.data, settings...)
	if err != nil {
		return false, inFile(err, hostPath)
	}
	conf, err := libvirtconf.Parse(edited)
	if err != nil {
		return false, inFile(err, hostPath)
	}
	if errs := insecure(conf); len(errs) > 0 {
		return false, fmt.Errorf("libvirttls: %s would stay insecure after the edit; fix it or override it in the Config's Extra settings: %w", hostPath, errors.Join(errs...))
	}
	if st.exists && bytes.Equal(edited, st.data) {
		return false, nil
	}
	if err := p.addParents(o, path.Dir(hostPath)); err != nil {
		return false, err
	}
	// Keep the file's mode and owner; a new file is 0644 root.
	w, mode := rootOwner, configFileMode
	if st.exists {
		w = owner{uid: st.uid, gid: st.gid, user: fmt.Sprint(st.uid), grp: fmt.Sprint(st.gid)}
		if st.uid == rootOwner.uid && st.gid == rootOwner.gid {
			w = rootOwner
		}
		mode = st.mode
	}
	disk := o.DiskPath(hostPath)
	p.Changes = append(p.Changes, Change{Kind: ChangeConfig, Path: hostPath, Mode: mode, Owner: w.String(),
		diskPath: disk, before: st, oldConfig: st.data,
		after: entry{hostPath: hostPath, data: edited, mode: mode, owner: w}})
	return true, nil
}

// actions returns the service steps after the changes: a restart when a
// configuration changed (libvirtd reads its files and qemu.conf only at
// start), enabling libvirtd-tls.socket on socket-activated hosts, or only
// a TLS credentials reload when only PKI files changed. Whenever
// libvirtd-tcp.socket is enabled or active, it is stopped, disabled and
// masked, and libvirtd restarted: a socket-activated libvirtd serves that
// socket whatever listen_tcp says, and keeps serving an fd it was handed
// until it restarts.
func (o *Config) actions(ctx context.Context, configChanged, anyChange bool) ([]Action, error) {
	units, err := unitStates(ctx, o.units(), libvirtdSocket, libvirtdTLSSocket, libvirtdTCPSocket)
	if err != nil {
		return nil, err
	}
	// CloudStack's legacy mode masks the sockets and runs libvirtd
	// --listen: then listen_tls applies and a restart is all it takes.
	masked := units[libvirtdSocket].Masked || units[libvirtdTLSSocket].Masked
	socketUnit := !masked && units[libvirtdTLSSocket].Exists
	tcpOpen := units[libvirtdTCPSocket].open()
	var closeTCP []Action
	if tcpOpen {
		closeTCP = []Action{
			{Command: []string{"systemctl", "disable", "--now", libvirtdTCPSocket}, Why: "a socket-activated libvirtd serves libvirtd-tcp.socket, unencrypted, whatever listen_tcp says"},
			{Command: []string{"systemctl", "mask", libvirtdTCPSocket}, Why: "no other unit may start the TCP socket again"},
		}
	}
	switch {
	case socketUnit && (configChanged || tcpOpen || !units[libvirtdTLSSocket].Enabled):
		// Under socket activation listen_tls is ignored: TLS is served
		// only when systemd passes the libvirtd-tls.socket fd.
		// The TCP socket closes first, so that no activation between
		// the steps hands its fd to a new libvirtd.
		return slices.Concat(
			closeTCP,
			[]Action{{Command: []string{"systemctl", "stop", libvirtdService}, Why: "libvirtd reads libvirtd.conf and qemu.conf at start"}},
			[]Action{
				{Command: []string{"systemctl", "enable", "--now", libvirtdTLSSocket}, Why: "a socket-activated libvirtd serves TLS only on libvirtd-tls.socket"},
				{Command: []string{"systemctl", "start", libvirtdService}, Why: "start libvirtd with the new configuration"},
			}), nil
	case configChanged || tcpOpen || (anyChange && o.RootedConfigPaths && o.root() != "/"):
		// virt-admin server-update-tls reloads from libvirt's default
		// paths (/etc/pki/...), whatever key_file, cert_file, ca_file and
		// crl_file say (libvirt 9.0, verified): with paths under another
		// root only a restart picks up new files.
		return append(closeTCP, Action{Command: []string{"systemctl", "restart", libvirtdService}, Why: "libvirtd reads libvirtd.conf and qemu.conf at start"}), nil
	case anyChange:
		return []Action{{Command: []string{"virt-admin", "server-update-tls", "libvirtd"}, Why: "reload libvirtd's TLS credentials without a restart (libvirt >= 6.2)"}}, nil
	}
	return nil, nil
}

// checkAncestors refuses hostPath when one of its existing ancestors
// under root (such as root/etc) is a symbolic link or not a directory:
// files written through a link would land outside root, keys included.
func checkAncestors(root, hostPath string) error {
	var dirs []string
	for d := path.Dir(hostPath); d != "/" && d != "."; d = path.Dir(d) {
		dirs = append(dirs, d)
	}
	for _, d := range slices.Backward(dirs) {
		disk := filepath.Join(root, d)
		fi, err := os.Lstat(disk)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("libvirttls: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("libvirttls: %s is a symbolic link or not a directory; refusing to write through it", disk)
		}
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// inFile names the file an error of the configuration editor is about.
func inFile(err error, path string) error {
	var se *libvirtconf.SyntaxError
	if errors.As(err, &se) && se.File == "" {
		se.File = path
		return err
	}
	return fmt.Errorf("%w (in %s)", err, path)
}
