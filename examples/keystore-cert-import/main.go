// Command keystore-cert-import installs a host certificate issued for the
// CSR of keystore-setup, in the role of CloudStack's keystore-cert-import
// script: it checks that the certificate matches the key in DIR/cloud.jks
// and chains to the CA bundle (refusing, and changing nothing, otherwise),
// stores the chain under alias "cloud" and the CA certificates as
// "cloudca.1", "cloudca.2", ..., and writes DIR/cloud.crt, DIR/cloud.key
// (mode 0600) and DIR/cloud.ca.crt, each atomically. It then reports
// whether the host's credentials are complete and valid.
//
// Usage:
//
//	keystore-cert-import -dir DIR -properties FILE -cert FILE|- -ca FILE|-
//
// The certificate and the CA bundle are PEM, read from files or from
// standard input ("-", for one of them), never from arguments. The
// keystore passphrase is read from the properties file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kvmpki/kvmpki/keystore"
)

// maxInput bounds what is read from a file or standard input.
const maxInput = 4 << 20

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "keystore-cert-import:", err)
		if errors.Is(err, flag.ErrHelp) || errors.As(err, new(usageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a bad command line.
type usageError string

func (e usageError) Error() string { return string(e) }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keystore-cert-import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "credentials directory holding cloud.jks")
	props := fs.String("properties", "", "agent.properties holding keystore.passphrase (default DIR/agent.properties)")
	certFile := fs.String("cert", "", "issued certificate, then any intermediates (PEM file, or - for standard input)")
	caFile := fs.String("ca", "", "CA bundle (PEM file, or - for standard input)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError("unexpected arguments: " + strings.Join(fs.Args(), " "))
	case *dir == "":
		return usageError("-dir is required")
	case *certFile == "" || *caFile == "":
		return usageError("-cert and -ca are required")
	case *certFile == "-" && *caFile == "-":
		return usageError("only one of -cert and -ca can be read from standard input")
	}
	certPEM, err := readInput(*certFile, stdin)
	if err != nil {
		return err
	}
	caPEM, err := readInput(*caFile, stdin)
	if err != nil {
		return err
	}
	res, err := keystore.Import(ctx, *dir, certPEM, caPEM, &keystore.ImportOptions{PropertiesFile: *props})
	if err != nil {
		return err
	}
	leaf := res.Chain[0]
	fmt.Fprintf(stdout, "imported: %s, valid until %s, chain of %d, %d trusted CA certificate(s)\n",
		leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339), len(res.Chain), len(res.CACerts))
	creds, err := keystore.CheckSecured(ctx, *dir, &keystore.CheckSecuredOptions{PropertiesFile: *props})
	if err != nil {
		return fmt.Errorf("imported, but %w", err)
	}
	fmt.Fprintf(stdout, "secured: yes, until %s\n", creds.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// readInput reads a PEM payload from a file, or from stdin for "-".
func readInput(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInput {
		return nil, fmt.Errorf("%s is over %d bytes", name, maxInput)
	}
	return data, nil
}
