package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/keystore"
	"github.com/kvmpki/kvmpki/libvirttls"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		if errors.Is(err, flag.ErrHelp) || errors.As(err, new(usageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a bad command line.
type usageError string

func (e usageError) Error() string { return string(e) }

// libvirtdReload is what -reload-libvirt runs on a ReloadCommand: libvirtd
// loads its certificate, key, CA and CRL again without a restart (libvirt
// 6.2 and later); see package libvirttls.
var libvirtdReload = libvirttls.Action{
	Command: []string{"virt-admin", "server-update-tls", "libvirtd"},
	Why:     "reload libvirtd's TLS credentials without a restart",
}

// run parses args and runs the agent until ctx is done. It returns nil
// when ctx ends the agent, and an error when it cannot start.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "credentials `directory` (CloudStack: /etc/cloudstack/agent) (required)")
	props := fs.String("properties", "", "agent.properties `file` holding keystore.passphrase (default DIR/agent.properties)")
	servers := fs.String("servers", "", "comma-separated management server agent ports, `host:port,...` (required)")
	bootstrap := fs.String("bootstrap", "", "bootstrap credential `prefix`: PREFIX.crt, PREFIX.key, PREFIX.ca.crt (default DIR/bootstrap)")
	hostID := fs.String("hostid", "", "this host's `name` in its hello and CSR (default: the host name)")
	reloadLibvirt := fs.Bool("reload-libvirt", false, "on reload, also run virt-admin server-update-tls libvirtd")
	maxBackoff := fs.Duration("max-backoff", defaultMaxBackoff, "longest wait between reconnections")
	connectTimeout := fs.Duration("connect-timeout", defaultDialTimeout, "bound on each connection's dial and handshake")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError("unexpected arguments: " + strings.Join(fs.Args(), " "))
	case *dir == "":
		return usageError("-dir is required")
	case len(ca.SplitHosts(*servers)) == 0:
		return usageError("-servers is required")
	case *maxBackoff < initialBackoff:
		return usageError(fmt.Sprintf("-max-backoff must be at least %v", initialBackoff))
	case *connectTimeout <= 0:
		return usageError("-connect-timeout must be positive")
	}
	if *props == "" {
		*props = filepath.Join(*dir, keystore.PropertiesFile)
	}
	if *bootstrap == "" {
		*bootstrap = filepath.Join(*dir, "bootstrap")
	}
	if *hostID == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("agent: host name (use -hostid): %w", err)
		}
		*hostID = h
	}
	a := &agent{
		dir:         *dir,
		props:       *props,
		servers:     *servers,
		bootstrap:   *bootstrap,
		hostID:      *hostID,
		log:         slog.New(slog.NewTextHandler(stderr, nil)),
		events:      &events{w: stdout},
		maxBackoff:  *maxBackoff,
		dialTimeout: *connectTimeout,
	}
	if *reloadLibvirt {
		a.reloadServices = func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			return libvirttls.ExecAction(ctx, libvirtdReload)
		}
	}
	return a.run(ctx)
}
