// Command consoleproxy is a browser console proxy for QEMU virtual
// machines, what CloudStack's console proxy VM does, without its
// weaknesses (reference cloudstack.md §10, weaknesses #10 and #11):
//
//	consoleproxy -listen ADDR -ca FILE -cert FILE -key FILE -token-key FILE
//	             [-web-cert FILE -web-key FILE | -insecure-http] [-novnc DIR]
//	consoleproxy mint-token -token-key FILE -host HOST -port PORT
//	             -server-name NAME [-password-file FILE|-] [-ttl 1m]
//
// It serves a console page with noVNC (npm @novnc/novnc, installed into a
// cache directory by install-novnc.sh, not shipped here) over HTTPS, and
// a WebSocket endpoint that bridges the browser to the VM's VNC server:
//
//   - The browser opens https://ADDR/console#TOKEN. The token, minted by
//     the platform with mint-token (or Tokens.Mint) and the same key
//     file, names the hypervisor's host, port and certificate name and
//     carries the VM's VNC password, sealed with AES-GCM; it lives at
//     most 10 minutes and opens one session. An expired, altered,
//     foreign or already used token is refused before any connection to
//     a hypervisor.
//   - The proxy reaches QEMU with package rfb: VeNCrypt X509Vnc only,
//     TLS 1.2 or later, the server certificate verified against -ca and
//     the token's server name, the proxy's client certificate (-cert,
//     -key) presented, as QEMU's verify-peer=yes demands.
//   - Before any RFB byte, the page receives the back end's security
//     state (TLS version, cipher suite, verified server and issuer) as a
//     JSON text message, and shows its "encrypted" indicator from that
//     alone, never from the desktop name.
//   - noVNC then speaks RFB 3.8 with security type None to the proxy
//     (rfb.AcceptViewer), and rfb.Conn.Relay carries the session; the
//     proxy writes no RFB by hand.
//
// The token key file holds at least 32 random bytes and must not be
// readable by others (mode 0600). -web-cert and -web-key are the HTTPS
// server's certificate. Without them the proxy serves plain HTTP, which
// it accepts only on a loopback -listen (behind a TLS-terminating front
// end on the same machine) unless -insecure-http says otherwise.
//
// It exits with status 1 and a message on standard error on failure, and
// 2 on a usage error.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kvmpki/kvmpki/internal/secret"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks command-line errors, which exit with status 2.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var err error
	if len(args) > 0 && args[0] == "mint-token" {
		err = mintToken(args[1:], stdin, stdout, stderr)
	} else {
		err = serve(ctx, args, stderr)
	}
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	// Errors of this package's functions carry the prefix already.
	fmt.Fprintln(stderr, "consoleproxy:", strings.TrimPrefix(err.Error(), "consoleproxy: "))
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// serveOptions are the flags of the proxy.
type serveOptions struct {
	listen, ca, cert, key, tokenKey, webCert, webKey, novnc string
	insecureHTTP                                            bool
	dialTimeout                                             time.Duration
}

func parseServeFlags(args []string, stderr io.Writer) (serveOptions, error) {
	var o serveOptions
	fs := flag.NewFlagSet("consoleproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "", "address to serve the console page and WebSocket on (required)")
	fs.StringVar(&o.ca, "ca", "", "PEM file of the CA that issued the hypervisors' VNC certificates (required)")
	fs.StringVar(&o.cert, "cert", "", "PEM file of the proxy's client certificate for QEMU (required)")
	fs.StringVar(&o.key, "key", "", "PEM file of the key of -cert (required)")
	fs.StringVar(&o.tokenKey, "token-key", "", "file holding the console token secret, mode 0600 (required)")
	fs.StringVar(&o.webCert, "web-cert", "", "PEM file of the HTTPS server certificate")
	fs.StringVar(&o.webKey, "web-key", "", "PEM file of the key of -web-cert")
	fs.BoolVar(&o.insecureHTTP, "insecure-http", false, "serve plain HTTP (only behind a TLS-terminating proxy)")
	fs.StringVar(&o.novnc, "novnc", defaultNoVNCDir(), "directory install-novnc.sh installed noVNC into")
	fs.DurationVar(&o.dialTimeout, "dial-timeout", 10*time.Second, "bound on connecting to a VM's VNC server")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case o.listen == "" || o.ca == "" || o.cert == "" || o.key == "" || o.tokenKey == "":
		return o, fmt.Errorf("%w: -listen, -ca, -cert, -key and -token-key are required", errUsage)
	case o.insecureHTTP && (o.webCert != "" || o.webKey != ""):
		return o, fmt.Errorf("%w: -insecure-http and -web-cert/-web-key exclude each other", errUsage)
	case (o.webCert == "") != (o.webKey == ""):
		return o, fmt.Errorf("%w: -web-cert and -web-key go together", errUsage)
	case !o.insecureHTTP && o.webCert == "" && !loopback(o.listen):
		return o, fmt.Errorf("%w: -web-cert and -web-key are required on a non-loopback -listen (or -insecure-http)", errUsage)
	case o.dialTimeout <= 0:
		return o, fmt.Errorf("%w: -dial-timeout must be positive", errUsage)
	}
	return o, nil
}

// loopback reports whether addr's host is a loopback address or
// "localhost": only the local machine (a TLS-terminating front end) can
// reach a listener there.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// newProxy loads what the flags name.
func newProxy(o serveOptions, log *slog.Logger) (*proxy, error) {
	caPEM, err := os.ReadFile(o.ca)
	if err != nil {
		return nil, fmt.Errorf("-ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", o.ca)
	}
	cert, err := tls.LoadX509KeyPair(o.cert, o.key)
	if err != nil {
		return nil, fmt.Errorf("proxy certificate: %w", err)
	}
	tokens, err := LoadTokens(o.tokenKey)
	if err != nil {
		return nil, err
	}
	bundle, err := bundleNoVNC(o.novnc)
	if err != nil {
		return nil, err
	}
	return &proxy{tokens: tokens, roots: roots, clientCert: cert, novnc: bundle, log: log, now: time.Now, dialTimeout: o.dialTimeout}, nil
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	p, err := newProxy(o, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           p.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	scheme := "http"
	if o.webCert != "" {
		scheme = "https"
		webCert, err := tls.LoadX509KeyPair(o.webCert, o.webKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("web certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{webCert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	log.Info("serving consoles", "url", scheme+"://"+ln.Addr().String()+"/console#TOKEN")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	// Shutdown does not wait for hijacked (WebSocket) connections; the
	// base context, now done, ends their relays.
	<-errc
	return nil
}

// mintToken is the platform side: it prints a token for one VM's
// console, to append to the console URL after '#'.
func mintToken(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consoleproxy mint-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("token-key", "", "file holding the console token secret (required)")
	var t Target
	fs.StringVar(&t.Host, "host", "", "the hypervisor's address (required)")
	fs.IntVar(&t.Port, "port", 0, "the VM's VNC port (required)")
	fs.StringVar(&t.ServerName, "server-name", "", "the name the hypervisor's certificate must carry (default -host)")
	pwFile := fs.String("password-file", "", "file holding the VM's VNC password, or - for standard input")
	ttl := fs.Duration("ttl", time.Minute, "lifetime of the token, at most 10m")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *keyFile == "" || t.Host == "" || t.Port == 0 {
		return fmt.Errorf("%w: mint-token needs -token-key, -host and -port", errUsage)
	}
	if t.ServerName == "" {
		t.ServerName = t.Host
	}
	if *pwFile != "" {
		pw, err := secret.Read(*pwFile, stdin)
		if err != nil {
			return fmt.Errorf("reading the password: %w", err)
		}
		t.Password = string(pw)
		clear(pw)
	}
	tokens, err := LoadTokens(*keyFile)
	if err != nil {
		return err
	}
	tok, err := tokens.Mint(t, time.Now(), *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
