package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// usageError marks errors that deserve exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

const usage = `usage:
  mgmtserver (-dir DIR | -db URL) -api-listen ADDR -agent-listen ADDR [-names a,b] [-ips x,y] [flags]
  mgmtserver admin-cert (-dir DIR | -db URL) -out PREFIX [-name NAME] [-validity D] [-force]

The CA key password is read from $KVMPKI_CA_PASSWORD or -password-file.
Run 'mgmtserver -h' or 'mgmtserver admin-cert -h' for the flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return
	}
	fmt.Fprintln(os.Stderr, "mgmtserver:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

// run runs the command line args until ctx is done (the server) or the
// command ends (admin-cert).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) > 0 && args[0] == "admin-cert" {
		return adminCert(ctx, args[1:], stdout, stderr, getenv)
	}
	if len(args) > 0 && (args[0] == "help" || args[0] == "serve") {
		if args[0] == "help" {
			fmt.Fprint(stdout, usage)
			return nil
		}
		args = args[1:]
	}
	return serve(ctx, args, stdout, stderr, getenv)
}

// serverFlags are the server's flags.
type serverFlags struct {
	caFlags
	apiListen, agentListen string
	names, ips             string
	validity, maxValidity  time.Duration
	alertPeriod            time.Duration
	backgroundInterval     time.Duration
	shutdownTimeout        time.Duration
}

func parseServerFlags(args []string, stderr io.Writer, getenv func(string) string) (*serverFlags, error) {
	f := &serverFlags{caFlags: caFlags{getenv: getenv}}
	fs := flag.NewFlagSet("mgmtserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	f.register(fs)
	fs.StringVar(&f.apiListen, "api-listen", "", "HTTPS `address` of the API, /crl, /ocsp and /ca.pem (required)")
	fs.StringVar(&f.agentListen, "agent-listen", "", "agent port `address` (required)")
	fs.StringVar(&f.names, "names", "", "comma-separated DNS `names` of this server; the first is its host name (default: the system's host name)")
	fs.StringVar(&f.ips, "ips", "", "comma-separated IP `addresses` of this server")
	fs.DurationVar(&f.validity, "validity", 0, "agent certificate `validity` when a request names none (default 8760h, ca.framework.cert.validity.period)")
	fs.DurationVar(&f.maxValidity, "max-validity", 0, "longest `validity` a request may ask for (default: -validity)")
	fs.DurationVar(&f.alertPeriod, "alert-period", 0, "renew-or-alert `window` before a certificate ends (default 360h, ca.framework.cert.expiry.alert.period)")
	fs.DurationVar(&f.backgroundInterval, "background-interval", 0, "how often the background task `wakes` (default 1h, at least 1m)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "how long a SIGTERM waits for API requests in flight")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if err := f.check(stderr); err != nil {
		return nil, err
	}
	if f.apiListen == "" || f.agentListen == "" {
		return nil, &usageError{"-api-listen and -agent-listen are required"}
	}
	return f, nil
}

// parseIPs parses a comma-separated list of IP addresses.
func parseIPs(flagName, s string) ([]net.IP, error) {
	var out []net.IP
	for _, f := range splitCSV(s) {
		ip := net.ParseIP(f)
		if ip == nil {
			return nil, &usageError{fmt.Sprintf("%s: %q is not an IP address", flagName, f)}
		}
		out = append(out, ip)
	}
	return out, nil
}

// listening is the line printed on standard output once both listeners
// are open.
type listening struct {
	Event string `json:"event"`
	API   string `json:"api"`
	Agent string `json:"agent"`
}

// serve runs the management server until ctx is done.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	f, err := parseServerFlags(args, stderr, getenv)
	if err != nil {
		return err
	}
	dnsNames := splitCSV(f.names)
	if len(dnsNames) == 0 {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		dnsNames = []string{h}
	}
	addrs, err := parseIPs("-ips", f.ips)
	if err != nil {
		return err
	}
	if _, err := f.password(); err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	settings := &ca.Settings{
		Validity: f.validity, MaxValidity: f.maxValidity, ExpiryAlertPeriod: f.alertPeriod,
		BackgroundInterval: f.backgroundInterval, Logger: logger,
	}

	store, err := f.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	opts := &rootca.Options{Password: f.password, Logger: logger, MaxValidity: f.maxValidity}
	if opts.MaxValidity == 0 {
		opts.MaxValidity = f.validity
	}
	root, err := openCA(ctx, store, opts, logger)
	if err != nil {
		return err
	}
	reg, err := registry(store, opts, root)
	if err != nil {
		root.Close()
		return err
	}
	m, err := ca.New(ctx, reg, settings)
	if err != nil {
		root.Close()
		var se *ca.SettingError
		if errors.As(err, &se) {
			return &usageError{err.Error()}
		}
		return err
	}
	defer m.Close()

	apiLn, err := net.Listen("tcp", f.apiListen)
	if err != nil {
		return err
	}
	agentLn, err := net.Listen("tcp", f.agentListen)
	if err != nil {
		apiLn.Close()
		return err
	}
	srv, err := startServer(ctx, &serverConfig{
		Manager: m, Provider: root, Hostname: dnsNames[0], DNSNames: dnsNames[1:], Addresses: addrs,
		APIListener: apiLn, AgentListener: agentLn, Logger: logger, Background: true,
	})
	if err != nil {
		apiLn.Close()
		agentLn.Close()
		return err
	}
	line, _ := json.Marshal(listening{Event: "listening", API: srv.apiAddr.String(), Agent: srv.agentAddr.String()})
	fmt.Fprintf(stdout, "%s\n", line)
	logger.Info("listening", "api", srv.apiAddr.String(), "agent", srv.agentAddr.String(),
		"serial", provider.FormatSerial(srv.id.Certificate().SerialNumber))

	select {
	case <-ctx.Done():
	case <-srv.failed:
	}
	logger.Info("shutting down")
	err = srv.shutdown(f.shutdownTimeout)
	logger.Info("stopped")
	return err
}
