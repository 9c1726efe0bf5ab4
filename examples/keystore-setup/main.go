// Command keystore-setup prepares a KVM host's credentials for a
// certificate, in the role of CloudStack's keystore-setup script: it
// generates a key, writes the keystore DIR/cloud.jks (alias "cloud") and
// the CSR DIR/cloud.csr, keeps the keystore passphrase in the properties
// file (an existing keystore.passphrase is reused, every other line is left
// alone) and prints the CSR on standard output.
//
// Usage:
//
//	keystore-setup -dir DIR -properties FILE [-dns a,b] [-ip x,y]
//	    [-key-type rsa|ecdsa] [-format jks|pkcs12] [-cn NAME] [-rsa-bits N]
//
// Without -ip, the CSR names every non-loopback, non-link-local address of
// the host; without -dns, it names the common name (default: the host
// name). No secret is taken from or written to the command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/kvmpki/kvmpki/keystore"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "keystore-setup:", err)
		if errors.Is(err, flag.ErrHelp) || errors.As(err, new(usageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a bad command line.
type usageError string

func (e usageError) Error() string { return string(e) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keystore-setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "credentials directory (CloudStack: /etc/cloudstack/agent)")
	props := fs.String("properties", "", "agent.properties holding keystore.passphrase (default DIR/agent.properties)")
	dns := fs.String("dns", "", "comma-separated DNS names for the CSR (default: the common name)")
	ips := fs.String("ip", "", "comma-separated IP addresses for the CSR (default: the host's addresses)")
	keyType := fs.String("key-type", "ecdsa", "key type: ecdsa (P-256) or rsa")
	rsaBits := fs.Int("rsa-bits", 2048, "RSA key size, with -key-type rsa")
	format := fs.String("format", "pkcs12", "keystore format: pkcs12 or jks (the file is cloud.jks either way)")
	cn := fs.String("cn", "", "CSR common name (default: the host name)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments: " + strings.Join(fs.Args(), " "))
	}
	if *dir == "" {
		return usageError("-dir is required")
	}
	opts := &keystore.SetupOptions{PropertiesFile: *props, CommonName: *cn}
	var err error
	if opts.KeyAlgorithm, err = keystore.ParseKeyAlgorithm(*keyType); err != nil {
		return usageError(err.Error())
	}
	if opts.KeyAlgorithm == keystore.KeyAlgorithmRSA {
		opts.KeySize = *rsaBits
	}
	if opts.Format, err = keystore.ParseFormat(*format); err != nil {
		return usageError(err.Error())
	}
	if *dns != "" {
		opts.DNSNames = splitList(*dns)
	}
	if *ips != "" {
		for _, s := range splitList(*ips) {
			ip := net.ParseIP(s)
			if ip == nil {
				return usageError(fmt.Sprintf("-ip: %q is not an IP address", s))
			}
			opts.IPAddresses = append(opts.IPAddresses, ip)
		}
	}
	res, err := keystore.Setup(ctx, *dir, opts)
	if err != nil {
		return err
	}
	how := "reused the passphrase in"
	if res.NewPassphrase {
		how = "stored a new passphrase in"
	}
	propsPath := *props
	if propsPath == "" {
		propsPath = filepath.Join(*dir, keystore.PropertiesFile)
	}
	fmt.Fprintf(stderr, "keystore-setup: wrote %s (%s, alias %s) and %s; %s %s\n",
		res.Keystore, res.Format, keystore.KeyAlias, filepath.Join(*dir, keystore.CSRFile), how, propsPath)
	_, err = stdout.Write(res.CSR)
	return err
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
