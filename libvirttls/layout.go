package libvirttls

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path"
	"strconv"
	"strings"

	"github.com/kvmpki/kvmpki/internal/safefs"
	"github.com/kvmpki/kvmpki/libvirtconf"
)

// owner is a file's owner and group; names are for display.
type owner struct {
	uid, gid  int
	user, grp string
}

func (w owner) String() string { return w.user + ":" + w.grp }

// entry is one wanted directory, file or link, at a host path.
type entry struct {
	hostPath string
	dir      bool
	data     []byte // file content
	link     string // symlink target, a host path
	mode     fs.FileMode
	owner    owner
	secret   bool // a private key: never shown
}

// ErrQEMUGroupMissing: the group QEMU runs as does not exist on the host
// being secured, so its keys cannot be made readable to QEMU. On Debian
// and Ubuntu the libvirt-daemon-system package creates libvirt-qemu.
var ErrQEMUGroupMissing = errors.New("libvirttls: QEMU group missing")

// owners resolves root and QEMU's group. A caller that is not root can
// own files only as itself, so the layout is then made for the caller's
// user and group: fine for tests and dry runs, not for a real host. As
// root, QEMU's group is looked up; a missing group is an error wrapping
// ErrQEMUGroupMissing for the real host (Root "/"), and the caller's
// group under another root.
func (o *Config) owners(group string) (rootOwner, qemuOwner owner, err error) {
	if os.Geteuid() != 0 {
		w := callerOwner()
		return w, w, nil
	}
	rootOwner = owner{uid: 0, gid: 0, user: "root", grp: "root"}
	if num, ok := strings.CutPrefix(group, "+"); ok {
		// qemu.conf's "+GID": a numeric group, which need not have a name.
		gid, err := strconv.Atoi(num)
		if err != nil || gid < 0 {
			return owner{}, owner{}, fmt.Errorf("libvirttls: QEMU group %q is not a number", group)
		}
		return rootOwner, owner{uid: 0, gid: gid, user: "root", grp: group}, nil
	}
	lookup := user.LookupGroup
	if o != nil && o.LookupGroup != nil {
		lookup = o.LookupGroup
	}
	g, err := lookup(group)
	if err != nil {
		if o.root() != "/" {
			// A temporary root: no QEMU of this machine reads these keys.
			w := callerOwner()
			return rootOwner, owner{uid: 0, gid: w.gid, user: "root", grp: w.grp}, nil
		}
		hint := ""
		if group == defaultQEMUGroup {
			hint = "; install " + qemuGroupPackage + ", which creates it,"
		}
		return owner{}, owner{}, fmt.Errorf("%w: %q: %w%s or name QEMU's group in Config.QEMUGroup", ErrQEMUGroupMissing, group, err, hint)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return owner{}, owner{}, fmt.Errorf("libvirttls: QEMU group %q has gid %q", group, g.Gid)
	}
	return rootOwner, owner{uid: 0, gid: gid, user: "root", grp: group}, nil
}

// callerOwner is the effective user and group of this process.
func callerOwner() owner {
	uid, gid := os.Geteuid(), os.Getegid()
	w := owner{uid: uid, gid: gid, user: strconv.Itoa(uid), grp: strconv.Itoa(gid)}
	if uid == 0 {
		w.user = "root"
	} else if u, err := user.LookupId(w.user); err == nil {
		w.user = u.Username
	}
	if gid == 0 {
		w.grp = "root"
	} else if g, err := user.LookupGroupId(w.grp); err == nil {
		w.grp = g.Name
	}
	return w
}

// qemuGroup returns the group QEMU's keys are readable by.
func (o *Config) qemuGroup(qemuConf *libvirtconf.Config) string {
	if o != nil && o.QEMUGroup != "" {
		return o.QEMUGroup
	}
	// The group qemu.conf will have: the last group= of ExtraQEMU, else
	// the file's. A numeric "+GID" is kept as it is (see owners).
	group := libvirtconf.Value{}
	if qemuConf != nil {
		group, _ = qemuConf.Get("group")
	}
	if o != nil {
		for _, s := range o.ExtraQEMU {
			if s.Key == "group" {
				group = s.Value
			}
		}
	}
	if s, ok := group.Str(); ok && s != "" {
		return s
	}
	return defaultQEMUGroup
}

// layout returns the wanted PKI directories and files, parents first.
func (o *Config) layout(c *Credentials, rootOwner, qemuOwner owner) ([]entry, error) {
	var out []entry
	dir := func(p string, mode fs.FileMode, w owner) {
		out = append(out, entry{hostPath: p, dir: true, mode: mode, owner: w})
	}
	symlink := o != nil && o.Install == InstallSymlinks
	credDir := o.credentialsDir()
	// file adds a public file, linked to the agent's file with InstallSymlinks.
	file := func(p string, data []byte, agentName string) {
		e := entry{hostPath: p, data: data, mode: publicFileMode, owner: rootOwner}
		if symlink && agentName != "" {
			e = entry{hostPath: p, link: path.Join(credDir, agentName), owner: rootOwner}
		}
		out = append(out, e)
	}
	key := func(p string, linkable bool, mode fs.FileMode, w owner) {
		e := entry{hostPath: p, data: c.Key, mode: mode, owner: w, secret: true}
		if symlink && linkable {
			e = entry{hostPath: p, link: path.Join(credDir, AgentKey), owner: w, secret: true}
		}
		out = append(out, e)
	}
	crl := crlPEM(c.CRL)

	dir("/etc/pki", publicDirMode, rootOwner)
	dir(path.Dir(CACertPath), publicDirMode, rootOwner)
	file(CACertPath, c.CACert, AgentCACert)
	if len(crl) > 0 {
		file(CRLPath, crl, "")
	}
	dir(path.Dir(ServerCertPath), publicDirMode, rootOwner)
	file(ServerCertPath, c.Cert, AgentCert)
	file(ClientCertPath, c.Cert, AgentCert)
	dir(path.Dir(ServerKeyPath), privateDirMode, rootOwner)
	key(ServerKeyPath, true, rootKeyMode, rootOwner)
	key(ClientKeyPath, true, rootKeyMode, rootOwner)

	// The directories QEMU reads: QEMU's group may enter and read the
	// keys; the certificates are public anyway.
	for _, d := range []struct {
		dir    string
		client bool
	}{{VNCDir, false}, {QEMUDir, true}} {
		dir(d.dir, qemuDirMode, qemuOwner)
		file(path.Join(d.dir, QEMUCACert), c.CACert, AgentCACert)
		if len(crl) > 0 {
			file(path.Join(d.dir, QEMUCRL), crl, "")
		}
		file(path.Join(d.dir, QEMUServerCert), c.Cert, AgentCert)
		key(path.Join(d.dir, QEMUServerKey), false, groupKeyMode, qemuOwner)
		if d.client {
			file(path.Join(d.dir, QEMUClientCert), c.Cert, AgentCert)
			key(path.Join(d.dir, QEMUClientKey), false, groupKeyMode, qemuOwner)
		}
	}
	return out, nil
}

// WritePKIPath writes c into dir in the layout of a libvirt client's
// pkipath URI parameter (cacert.pem, clientcert.pem, clientkey.pem with
// mode 0600 and, when c has a CRL, cacrl.pem), for clients that do not
// use the system paths, such as virsh -c 'qemu+tls://host/system?pkipath=DIR'.
// dir is created with mode 0700 if missing; existing files are replaced.
// It returns ctx.Err(), writing nothing, when ctx is done.
func WritePKIPath(ctx context.Context, dir string, c *Credentials) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c == nil || len(c.CACert) == 0 || len(c.Cert) == 0 || len(c.Key) == 0 {
		return fmt.Errorf("%w: CA certificate, certificate and key are all required", ErrCredentialsMissing)
	}
	if err := onlyCRLBlocks(c.CRL); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, privateDirMode); err != nil {
		return fmt.Errorf("libvirttls: %w", err)
	}
	d, err := safefs.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("libvirttls: %w", err)
	}
	defer d.Close()
	files := []safefs.Entry{
		{Dir: d, Path: PKIPathCACert, Data: c.CACert, Mode: publicFileMode},
		{Dir: d, Path: PKIPathClientCert, Data: c.Cert, Mode: publicFileMode},
		{Dir: d, Path: PKIPathClientKey, Data: c.Key, Mode: rootKeyMode},
	}
	if len(c.CRL) > 0 {
		files = append(files, safefs.Entry{Dir: d, Path: PKIPathCRL, Data: crlPEM(c.CRL), Mode: publicFileMode})
	}
	// All or nothing: a client never sees a new key with an old
	// certificate.
	if err := safefs.Replace(files, nil); err != nil {
		return fmt.Errorf("libvirttls: %w", err)
	}
	return nil
}
