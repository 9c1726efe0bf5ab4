// Command vncsnap connects to a VNC server the way a console proxy
// reaches a QEMU VM (RFB 3.8 with VeNCrypt X509, the server certificate
// verified against a CA, optionally a client certificate and the VNC
// password inside TLS), prints how the connection is secured, and writes
// one screenshot as PNG.
//
//	vncsnap -addr HOST:PORT -ca FILE [-cert FILE -key FILE] [-server-name NAME]
//	        [-password-file FILE|-] -out FILE.png
//
// The password is read from a file, or from standard input with
// -password-file -, never from the command line; a trailing newline is
// dropped. Without -server-name, the host part of -addr is checked
// against the certificate (an IP address against its IP SANs).
//
// It exits with status 1 and a message on standard error on any
// failure, and 2 on a usage error.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"time"

	"github.com/kvmpki/kvmpki/internal/safefs"
	"github.com/kvmpki/kvmpki/internal/secret"
	"github.com/kvmpki/kvmpki/rfb"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// options are the parsed flags.
type options struct {
	addr, ca, cert, key, serverName, passwordFile, out string
	timeout                                            time.Duration
}

// errUsage marks command-line errors, which exit with status 2.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "vncsnap:", err)
		return 2
	}
	if err := snap(ctx, opts, stdin, stdout); err != nil {
		fmt.Fprintln(stderr, "vncsnap:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("vncsnap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.StringVar(&o.addr, "addr", "", "VNC server `HOST:PORT` (required)")
	fs.StringVar(&o.ca, "ca", "", "PEM `FILE` of the CA certificates that issued the server's certificate (required)")
	fs.StringVar(&o.cert, "cert", "", "PEM `FILE` of the client certificate, for servers that require one (QEMU verify-peer=on)")
	fs.StringVar(&o.key, "key", "", "PEM `FILE` of the client certificate's private key")
	fs.StringVar(&o.serverName, "server-name", "", "`NAME` to verify the server certificate against (default: the host of -addr)")
	fs.StringVar(&o.passwordFile, "password-file", "", "`FILE` holding the VNC password, or - for standard input")
	fs.StringVar(&o.out, "out", "", "PNG `FILE` to write the screenshot to (required)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound on connecting and taking the screenshot")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vncsnap -addr HOST:PORT -ca FILE [-cert FILE -key FILE] [-server-name NAME] [-password-file FILE|-] -out FILE.png")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("%w: unexpected argument %q (the password is never an argument: use -password-file)", errUsage, fs.Arg(0))
	case o.addr == "":
		return nil, fmt.Errorf("%w: -addr is required", errUsage)
	case o.ca == "":
		return nil, fmt.Errorf("%w: -ca is required: the server certificate is always verified", errUsage)
	case o.out == "":
		return nil, fmt.Errorf("%w: -out is required", errUsage)
	case (o.cert == "") != (o.key == ""):
		return nil, fmt.Errorf("%w: -cert and -key go together", errUsage)
	}
	return o, nil
}

func snap(ctx context.Context, o *options, stdin io.Reader, stdout io.Writer) error {
	caPEM, err := os.ReadFile(o.ca)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s holds no PEM certificate", o.ca)
	}
	tlsCfg := &tls.Config{RootCAs: roots, ServerName: o.serverName}
	if o.cert != "" {
		cert, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return fmt.Errorf("loading the client certificate: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	}
	cfg := &rfb.Config{TLSConfig: tlsCfg}
	if o.passwordFile != "" {
		password, err := secret.Read(o.passwordFile, stdin)
		if err != nil {
			return fmt.Errorf("reading the password: %w", err)
		}
		defer clear(password)
		// rfb copies the password and clears only its copy; this
		// buffer is cleared by the deferred clear above.
		cfg.Password = func() ([]byte, error) { return password, nil }
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	c, err := rfb.Dial(ctx, "tcp", o.addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	w, h := c.Size()
	fmt.Fprintf(stdout, "security: %s\n", c.ConnectionState())
	fmt.Fprintf(stdout, "desktop:  %q %dx%d\n", c.DesktopName(), w, h)

	img, err := rfb.Screenshot(ctx, c)
	if err != nil {
		return err
	}
	if err := writePNG(o.out, img); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote:    %s (%dx%d)\n", o.out, img.Rect.Dx(), img.Rect.Dy())
	return nil
}

// writePNG writes img to path through a temporary file renamed over it,
// so that a failure leaves no half-written screenshot and a link at path
// is replaced, not written through.
func writePNG(path string, img image.Image) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return fmt.Errorf("encoding PNG: %w", err)
	}
	return safefs.WriteFile(path, buf.Bytes(), 0o644, nil)
}
