// Command secure-host secures a KVM host's libvirtd and QEMU with the
// host's CloudStack agent credentials, as "cloudstack-setup-agent -s" does,
// plus a CRL, a DN allow list and native TLS for migration streams.
//
//	secure-host -creds DIR -root ROOT [-crl FILE] [-apply]
//
// DIR holds cloud.ca.crt, cloud.crt and cloud.key (and optionally
// cloud.crl); ROOT is the host's filesystem root, "/" on a real host. The
// command prints the plan as a diff and, with -apply, applies it and
// reports whether the host is secured. The configuration it writes names
// the host paths (/etc/pki/...), as libvirt reads them on that host. The
// service actions (restarting libvirtd, enabling libvirtd-tls.socket,
// reloading TLS credentials) run only when ROOT is "/".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/kvmpki/kvmpki/libvirttls"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "secure-host:", err)
		os.Exit(1)
	}
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("secure-host", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		credsDir   = fs.String("creds", "", "directory of the agent credentials: cloud.ca.crt, cloud.crt, cloud.key (required)")
		root       = fs.String("root", "", "the host's filesystem root, / on a real host (required)")
		crlFile    = fs.String("crl", "", "CRL of the CA (PEM or DER), installed where libvirtd and QEMU read it")
		apply      = fs.Bool("apply", false, "apply the plan; without it, only print it")
		symlink    = fs.Bool("symlink", false, "link certificates and root-only keys to the agent's files instead of copying them")
		force      = fs.Bool("migrate-tls-force", false, "set migrate_tls_force=1: refuse migrations that are neither native TLS nor tunnelled")
		qemuGroup  = fs.String("qemu-group", "", "group QEMU runs as (default: qemu.conf's group, else libvirt-qemu)")
		checkAddr  = fs.String("check", "", "after applying, dial this libvirtd TLS address (host:port) with the host's client credentials")
		allowedDNs listFlag
	)
	fs.Var(&allowedDNs, "allow-dn", "tls_allowed_dn_list pattern, in GnuTLS order (repeatable; default: list unset, any certificate of the CA)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: secure-host -creds DIR -root ROOT [-crl FILE] [-apply]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *credsDir == "" || *root == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("-creds and -root are required, and no arguments are taken")
	}

	creds, err := libvirttls.LoadCredentials(ctx, *credsDir)
	if err != nil {
		return err
	}
	if *crlFile != "" {
		if creds.CRL, err = os.ReadFile(*crlFile); err != nil {
			return err
		}
	}
	// Links name host paths: credentials inside ROOT are named as the
	// host will see them.
	absCreds, err := filepath.Abs(*credsDir)
	if err != nil {
		return err
	}
	if absRoot, err := filepath.Abs(*root); err == nil {
		if rel, err := filepath.Rel(absRoot, absCreds); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			absCreds = filepath.Join("/", rel)
		}
	}
	opts := &libvirttls.Config{
		Root:            *root,
		CredentialsDir:  absCreds,
		QEMUGroup:       *qemuGroup,
		MigrateTLSForce: *force,
	}
	if *symlink {
		opts.Install = libvirttls.InstallSymlinks
	}
	if len(allowedDNs) > 0 {
		opts.AllowedDNs = allowedDNs
	}
	plan, err := libvirttls.NewPlan(ctx, creds, opts)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, plan.Diff())
	if !*apply {
		if !plan.Empty() {
			fmt.Fprintln(stdout, "dry run: nothing changed; run again with -apply")
		}
		return nil
	}

	realHost := filepath.Clean(*root) == "/"
	applyOpts := &libvirttls.ApplyOptions{}
	if realHost {
		applyOpts.RunAction = libvirttls.ExecAction
	}
	if err := plan.Apply(ctx, applyOpts); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied %d change(s)\n", len(plan.Changes))
	if !realHost && len(plan.Actions) > 0 {
		fmt.Fprintf(stdout, "not run, as %s is not /: %d service action(s) listed above\n", *root, len(plan.Actions))
	}
	status := libvirttls.CheckHost(ctx, opts, &libvirttls.CheckHostOptions{DialAddr: *checkAddr})
	fmt.Fprintln(stdout, "host:", status)
	if !status.Secured {
		return errors.New("the host is not secured")
	}
	return nil
}
