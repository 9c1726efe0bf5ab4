package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// maxIdentityFile bounds the SSH identity file read.
const maxIdentityFile = 64 << 10

// provision provisions one KVM host over SSH with package ca: it runs
// keystore-setup on the host, issues a host certificate for its CSR with
// the -names and -ips, installs it with keystore-cert-import and reloads
// the host's services. The host's key is checked against -known-hosts
// before anything is sent; no secret or PEM is on any command line.
//
//	kvmpki-ca provision (-dir DIR | -db URL) -ssh USER@HOST:PORT -identity KEYFILE
//	    -known-hosts FILE -remote-bin DIR [-names a,b] [-ips x,y] [-remote-dir DIR]
//	    [-reload-command CMD]
func (c *command) provision(ctx context.Context, args []string) error {
	fs := c.flags()
	target := fs.String("ssh", "", "the host's SSH `USER@HOST:PORT` (port 22 when omitted)")
	identity := fs.String("identity", "", "unencrypted OpenSSH private key `file` (mode 0600) this server logs in with")
	knownHosts := fs.String("known-hosts", "", "known_hosts `file` holding the host's key; an unknown or changed key is refused")
	remoteBin := fs.String("remote-bin", "", "`directory` on the host holding keystore-setup and keystore-cert-import")
	names := fs.String("names", "", "comma-separated DNS `names` of the host")
	ips := fs.String("ips", "", "comma-separated IP `addresses` of the host")
	remoteDir := fs.String("remote-dir", "", "the host's keystore `directory`, holding agent.properties (default /etc/cloudstack/agent)")
	reload := fs.String("reload-command", "", "shell `command` run on the host after the install (default: virt-admin server-update-tls libvirtd, then display-reload for each running guest's VNC)")
	if err := c.parse(args); err != nil {
		return err
	}
	switch {
	case *target == "" || *identity == "" || *knownHosts == "" || *remoteBin == "":
		return &usageError{"-ssh, -identity, -known-hosts and -remote-bin are required"}
	}
	user, addr, ok := strings.Cut(*target, "@")
	if !ok || user == "" || addr == "" {
		return &usageError{fmt.Sprintf("-ssh: %q is not USER@HOST:PORT", *target)}
	}
	addrs, err := parseIPs("-ips", *ips)
	if err != nil {
		return err
	}
	dnsNames := splitList(*names)
	signer, err := readIdentity(*identity)
	if err != nil {
		return err
	}
	host, err := ca.NewSSHHost(&ca.SSHConfig{
		Addr:            addr,
		User:            user,
		Signer:          signer,
		KnownHostsFiles: []string{*knownHosts},
		RemoteBinDir:    *remoteBin,
		RemoteDir:       *remoteDir,
		ReloadCommand:   *reload,
	})
	if err != nil {
		return err
	}
	defer host.Close()

	if c.db == "" {
		if _, err := os.Stat(c.dbPath()); err != nil {
			return c.noCA(err)
		}
	}
	store, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := &provider.Registry{}
	if err := reg.Register("root", "kvmpki built-in CA", rootca.Factory(store, &rootca.Options{Password: c.password, Logger: logger})); err != nil {
		return err
	}
	m, err := ca.New(ctx, reg, &ca.Settings{Logger: logger})
	if err != nil {
		if errors.Is(err, provider.ErrNotFound) {
			return c.noCA(err)
		}
		return err
	}
	defer m.Close()

	name := addr
	if len(dnsNames) > 0 {
		name = dnsNames[0]
	}
	res, err := m.Provision(ctx, &ca.ProvisionRequest{Name: name, Host: host, DNSNames: dnsNames, IPAddresses: addrs})
	if res != nil {
		fmt.Fprintf(c.stdout, "provisioned %s: serial %s, valid until %s\n", name,
			provider.FormatSerial(res.Certificate.SerialNumber), res.Certificate.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
		if !res.Reloaded {
			fmt.Fprintf(c.stderr, "kvmpki-ca: %s holds the new certificate but its services were not reloaded; they use it after their next restart\n", name)
		}
	}
	return err
}

// readIdentity reads an unencrypted OpenSSH (or PEM) private key that only
// its owner can read, as ssh(1) insists.
func readIdentity(path string) (ssh.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("-identity: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("-identity: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("-identity: %s is readable by others (mode %#o); chmod 600 it", path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxIdentityFile+1))
	if err != nil {
		return nil, fmt.Errorf("-identity: %w", err)
	}
	defer clear(data)
	if len(data) > maxIdentityFile {
		return nil, fmt.Errorf("-identity: %s is over %d bytes", path, maxIdentityFile)
	}
	signer, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pm):
		return nil, fmt.Errorf("-identity: %s is encrypted; kvmpki-ca takes no passphrase, give it a key of its own", path)
	case err != nil:
		return nil, fmt.Errorf("-identity: %s: %w", path, err)
	}
	return signer, nil
}

// parseIPs parses a comma-separated list of IP addresses given to flag.
func parseIPs(flag, s string) ([]net.IP, error) {
	var out []net.IP
	for _, f := range splitList(s) {
		ip := net.ParseIP(f)
		if ip == nil {
			return nil, &usageError{fmt.Sprintf("%s: %q is not an IP address", flag, f)}
		}
		out = append(out, ip)
	}
	return out, nil
}
