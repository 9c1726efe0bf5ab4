package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/keystore"
	"github.com/kvmpki/kvmpki/provider"
)

// errNoCredentials means the agent has neither secured credentials in its
// directory nor a usable bootstrap certificate, so it cannot connect.
var errNoCredentials = errors.New("agent: no credentials to connect with")

// agent is one agent process's state.
type agent struct {
	dir       string // credentials directory
	props     string // agent.properties
	servers   string // the -servers list
	bootstrap string // bootstrap credential prefix
	hostID    string

	log    *slog.Logger
	events *events

	// reloadServices, if set, makes the host's services read the new
	// files on a ReloadCommand (-reload-libvirt).
	reloadServices func(ctx context.Context) error

	maxBackoff  time.Duration // if zero, defaultMaxBackoff
	dialTimeout time.Duration // if zero, defaultDialTimeout
	grace       time.Duration // if zero, defaultGrace

	mu          sync.Mutex
	creds       *ca.AgentCredentials
	onBootstrap bool
	dialer      *ca.Dialer // for creds; nil until the next dial
}

// keystoreFiles are the credentials package keystore writes in the
// directory.
func (a *agent) keystoreFiles() ca.AgentCredentialFiles {
	return ca.AgentCredentialFiles{
		CertFile: filepath.Join(a.dir, keystore.CertFile),
		KeyFile:  filepath.Join(a.dir, keystore.KeyFile),
		CAFile:   filepath.Join(a.dir, keystore.CACertFile),
		Logger:   a.log,
	}
}

// bootstrapFiles are the bootstrap credential's files.
func (a *agent) bootstrapFiles() ca.AgentCredentialFiles {
	return ca.AgentCredentialFiles{
		CertFile: a.bootstrap + ".crt",
		KeyFile:  a.bootstrap + ".key",
		CAFile:   a.bootstrap + ".ca.crt",
		Logger:   a.log,
	}
}

// chooseCredentials returns the credentials to connect with: the
// directory's when keystore.CheckSecured accepts them, else the bootstrap
// credential (bootstrap true), else an error matching errNoCredentials
// that says what is missing.
func (a *agent) chooseCredentials(ctx context.Context) (creds *ca.AgentCredentials, bootstrap bool, err error) {
	creds, secErr := a.loadSecured(ctx)
	if secErr == nil {
		return creds, false, nil
	}
	files := a.bootstrapFiles()
	if _, err := os.Stat(files.CertFile); errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("%w: %s is not secured (%v), and there is no bootstrap certificate %s: "+
			"have an administrator issue one with the management server's issueCertificate and store it as %s, %s (mode 0600) and %s",
			errNoCredentials, a.dir, secErr, files.CertFile, files.CertFile, files.KeyFile, files.CAFile)
	}
	creds, err = a.loadBootstrap()
	if err != nil {
		return nil, false, err
	}
	return creds, true, nil
}

// loadSecured loads the directory's credentials, if keystore.CheckSecured
// accepts them.
func (a *agent) loadSecured(ctx context.Context) (*ca.AgentCredentials, error) {
	if _, err := keystore.CheckSecured(ctx, a.dir, &keystore.CheckSecuredOptions{PropertiesFile: a.props}); err != nil {
		return nil, err
	}
	return ca.LoadAgentCredentials(a.keystoreFiles())
}

// loadBootstrap loads the bootstrap credential: its key file private to
// its owner, its certificate matching the key and not expired. Errors
// match errNoCredentials.
func (a *agent) loadBootstrap() (*ca.AgentCredentials, error) {
	files := a.bootstrapFiles()
	fi, err := os.Stat(files.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: bootstrap key: %w", errNoCredentials, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: bootstrap key %s is accessible to others (mode %04o): make it 0600",
			errNoCredentials, files.KeyFile, fi.Mode().Perm())
	}
	creds, err := ca.LoadAgentCredentials(files)
	if err != nil {
		return nil, fmt.Errorf("%w: bootstrap certificate %s: %w", errNoCredentials, files.CertFile, err)
	}
	if c := creds.Certificate(); time.Now().After(c.NotAfter) {
		return nil, fmt.Errorf("%w: bootstrap certificate %s (serial %s) expired at %s: have an administrator issue a new one",
			errNoCredentials, files.CertFile, provider.FormatSerial(c.SerialNumber), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return creds, nil
}

// fallback is called when the server refused the agent's certificate: it
// switches to the other credentials, if there are any. A refused keystore
// certificate (revoked: keystore.CheckSecured cannot tell) gives way to a
// bootstrap credential an administrator has put in place since, so the
// host enrols again without a restart; a refused bootstrap certificate
// (revoked once it served, if the agent stopped before removing it) gives
// way to secured credentials.
func (a *agent) fallback(ctx context.Context) {
	_, _, bootstrap := a.current()
	if bootstrap {
		creds, err := a.loadSecured(ctx)
		if err != nil {
			return
		}
		a.log.Warn("agent: the server refused the bootstrap certificate; trying the directory's credentials", "dir", a.dir)
		a.use(creds, false)
		return
	}
	if _, err := os.Stat(a.bootstrapFiles().CertFile); err != nil {
		return
	}
	creds, err := a.loadBootstrap()
	if err != nil {
		a.log.Warn("agent: the server refused the directory's certificate, and the bootstrap credential is not usable", "error", err)
		return
	}
	a.log.Warn("agent: the server refused the directory's certificate; trying the bootstrap credential", "prefix", a.bootstrap,
		"serial", serialOf(creds))
	a.use(creds, true)
}

// current returns the credentials in use and their dialer.
func (a *agent) current() (*ca.Dialer, *ca.AgentCredentials, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dialer == nil {
		a.dialer = &ca.Dialer{
			Credentials: a.creds,
			// One round over the list per dial: run's loop backs off
			// between rounds and reports each.
			Attempts:       len(ca.SplitHosts(a.servers)),
			InitialBackoff: initialBackoff / 2,
			MaxBackoff:     orDefault(a.maxBackoff, defaultMaxBackoff),
			Timeout:        orDefault(a.dialTimeout, defaultDialTimeout),
			Logger:         a.log,
		}
	}
	return a.dialer, a.creds, a.onBootstrap
}

// use makes creds the credentials of the next connection.
func (a *agent) use(creds *ca.AgentCredentials, bootstrap bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.creds, a.onBootstrap, a.dialer = creds, bootstrap, nil
}

// handle answers the management server's commands (a ca.AgentHandler).
// Its errors travel to the server: they name files and reasons, never a
// secret (package keystore keeps passphrases out of its errors).
func (a *agent) handle(ctx context.Context, cmd ca.AgentCommand) (ca.AgentAnswer, error) {
	a.events.emit(event{Event: evCommand, Command: commandName(cmd)})
	switch c := cmd.(type) {
	case *ca.SetupKeystoreCommand:
		res, err := keystore.Setup(ctx, a.dir, &keystore.SetupOptions{
			PropertiesFile: a.props,
			CommonName:     a.hostID,
			DNSNames:       c.Setup.DNSNames,
			IPAddresses:    c.Setup.IPAddresses,
			KeyAlgorithm:   c.Setup.KeyAlgorithm,
			KeySize:        c.Setup.KeySize,
		})
		if err != nil {
			return nil, fmt.Errorf("agent: keystore setup: %w", err)
		}
		a.log.Info("agent: keystore set up, CSR sent", "keystore", res.Keystore, "new_passphrase", res.NewPassphrase)
		return &ca.SetupKeystoreAnswer{CSRPEM: res.CSR}, nil
	case *ca.SetupCertificateCommand:
		res, err := keystore.Import(ctx, a.dir, c.Install.CertificatePEM, c.Install.CABundlePEM,
			&keystore.ImportOptions{PropertiesFile: a.props})
		if err != nil {
			return nil, fmt.Errorf("agent: certificate import: %w", err)
		}
		serial := provider.FormatSerial(res.Chain[0].SerialNumber)
		a.log.Info("agent: certificate installed", "serial", serial, "not_after", res.Chain[0].NotAfter)
		a.events.emit(event{Event: evProvisioned, Serial: serial})
		return &ca.SetupCertificateAnswer{}, nil
	case *ca.ReloadCommand:
		if err := a.reload(ctx); err != nil {
			return nil, err
		}
		return &ca.ReloadAnswer{}, nil
	}
	return nil, fmt.Errorf("agent: unknown command %T", cmd)
}

// reload switches to the directory's credentials, which must be secured,
// for the next connection: the credentials in use read changed files at
// each handshake, and bootstrap ones are replaced (and their files
// removed). Then it runs reloadServices, if set.
func (a *agent) reload(ctx context.Context) error {
	sec, err := keystore.CheckSecured(ctx, a.dir, &keystore.CheckSecuredOptions{PropertiesFile: a.props})
	if err != nil {
		return fmt.Errorf("agent: reload: the installed credentials are not usable: %w", err)
	}
	serial := provider.FormatSerial(sec.Chain[0].SerialNumber)
	a.mu.Lock()
	bootstrap := a.onBootstrap
	a.mu.Unlock()
	if bootstrap {
		creds, err := ca.LoadAgentCredentials(a.keystoreFiles())
		if err != nil {
			return fmt.Errorf("agent: reload: %w", err)
		}
		a.use(creds, false)
		a.removeBootstrap()
	}
	if a.reloadServices != nil {
		if err := a.reloadServices(ctx); err != nil {
			a.events.emit(event{Event: evReloaded, Serial: serial, Error: err.Error()})
			return fmt.Errorf("agent: reload: %w", err)
		}
	}
	a.events.emit(event{Event: evReloaded, Serial: serial})
	return nil
}

// removeBootstrap deletes the bootstrap credential's files once the
// agent is provisioned: the server revokes the certificate, and its key
// has no further use.
func (a *agent) removeBootstrap() {
	f := a.bootstrapFiles()
	for _, p := range []string{f.KeyFile, f.CertFile, f.CAFile} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("agent: cannot remove a bootstrap file", "file", p, "error", err)
		}
	}
	a.log.Info("agent: provisioned; bootstrap credential removed", "prefix", a.bootstrap)
}

// commandName is the wire name of cmd.
func commandName(cmd ca.AgentCommand) string {
	switch cmd.(type) {
	case *ca.SetupKeystoreCommand:
		return "SetupKeystoreCommand"
	case *ca.SetupCertificateCommand:
		return "SetupCertificateCommand"
	case *ca.ReloadCommand:
		return "ReloadCommand"
	}
	return fmt.Sprintf("%T", cmd)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
