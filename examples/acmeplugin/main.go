// Command acmeplugin shows a third-party CA provider as a plugin author
// writes one: a [provider.Provider] over an ACME (RFC 8555) CA such as
// Let's Encrypt (package acme beneath it), written against package
// provider's public API only, and registered in a [provider.Registry] by
// the platform (never in an init function).
//
//	acmeplugin -directory URL -ca-chain FILE -account-key FILE -dns a,b [-ip x,y]
//	           [-acme-ca FILE] [-http01-listen ADDR] -out PREFIX
//
// It registers the provider as "acme", opens it through the registry,
// orders one host certificate with a generated key for -dns and -ip, and
// writes PREFIX.crt (the leaf and its intermediate CAs) and PREFIX.key
// (PKCS #8, mode 0600, never overwritten). -ca-chain holds the CA's issuing
// chain in PEM (issuing CA first, up to the root); -account-key the ACME
// account key in PEM, created (ECDSA P-256, mode 0600) when the file does
// not exist; -acme-ca the CA certificates that the ACME server's HTTPS
// certificate chains to, if not the system roots. -http01-listen serves
// http-01 answers on that address (the CA connects to port 80 of each
// name); without it the CA must validate without them, as Pebble does
// with PEBBLE_VA_ALWAYS_VALID=1.
//
// Against Let's Encrypt's test server Pebble:
//
//	PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 pebble -config pebble.json &
//	curl --cacert pebble-tls-ca.pem https://127.0.0.1:15000/intermediates/0 >  chain.pem
//	curl --cacert pebble-tls-ca.pem https://127.0.0.1:15000/roots/0         >> chain.pem
//	acmeplugin -directory https://127.0.0.1:14000/dir -acme-ca pebble-tls-ca.pem \
//	    -ca-chain chain.pem -account-key account.pem -dns kvm1.example.org -out kvm1
//
// Errors go to standard error, with exit status 1 (2 for usage errors).
//
// The provider itself is package [github.com/kvmpki/kvmpki/examples/acmeplugin/acme],
// a library a platform imports; this command only glues it to files.
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kvmpki/kvmpki/examples/acmeplugin/acme"
	"github.com/kvmpki/kvmpki/provider"
)

// providerName is the registry name the command opens the plugin by.
const providerName = "acme"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "acmeplugin:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "acmeplugin:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

// run is the command, for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("acmeplugin", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var (
		directory = fl.String("directory", "", "ACME directory URL")
		chainFile = fl.String("ca-chain", "", "PEM file: the CA's issuing chain, issuing CA first, up to the root")
		acmeCA    = fl.String("acme-ca", "", "PEM file: CA certificates the ACME server's HTTPS certificate chains to (default: system roots)")
		keyFile   = fl.String("account-key", "", "PEM file: ACME account key, created if missing")
		dnsList   = fl.String("dns", "", "comma-separated DNS names")
		ipList    = fl.String("ip", "", "comma-separated IP addresses")
		listen    = fl.String("http01-listen", "", "address to serve http-01 challenge answers on")
		out       = fl.String("out", "", "output prefix: PREFIX.crt and PREFIX.key")
	)
	if err := fl.Parse(args); err != nil {
		return usageError{err}
	}
	if *directory == "" || *chainFile == "" || *keyFile == "" || *out == "" || (*dnsList == "" && *ipList == "") {
		return usageError{errors.New("-directory, -ca-chain, -account-key, -out and -dns or -ip are required")}
	}
	req := &provider.IssueRequest{Role: provider.RoleHost, DNSNames: splitList(*dnsList)}
	for _, s := range splitList(*ipList) {
		ip := net.ParseIP(s)
		if ip == nil {
			return usageError{fmt.Errorf("-ip: %q is not an IP address", s)}
		}
		req.IPAddresses = append(req.IPAddresses, ip)
	}
	// Refuse to overwrite before ordering anything.
	for _, name := range []string{*out + ".key", *out + ".crt"} {
		switch _, err := os.Lstat(name); {
		case err == nil:
			return fmt.Errorf("%s: %w", name, fs.ErrExist)
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	chain, err := readCertificates(*chainFile)
	if err != nil {
		return err
	}
	client := http.DefaultClient
	if *acmeCA != "" {
		pemBytes, err := os.ReadFile(*acmeCA)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return fmt.Errorf("%s holds no PEM certificate", *acmeCA)
		}
		client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		}}
	}
	accountKey, err := loadOrCreateKey(*keyFile)
	if err != nil {
		return err
	}
	solver := &acme.HTTP01Solver{}
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: solver, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}

	// The platform's side: a registry with the plugin in it, and the
	// configured provider opened by name.
	reg := &provider.Registry{}
	if err := reg.Register(providerName, "ACME CA (RFC 8555)", acme.Factory(acme.Config{
		DirectoryURL:   *directory,
		AccountKey:     accountKey,
		HTTPClient:     client,
		CACertificates: chain,
		Solver:         solver,
	})); err != nil {
		return err
	}
	p, err := reg.Open(ctx, providerName)
	if err != nil {
		return err
	}
	defer p.Close()

	start := time.Now()
	res, err := p.Issue(ctx, req)
	if err != nil {
		var rl *provider.RetryLaterError
		if errors.As(err, &rl) && !rl.After.IsZero() {
			return fmt.Errorf("%w (retry after %s)", err, rl.After.UTC().Format(time.RFC3339))
		}
		return err
	}
	certPEM, err := res.ChainPEM()
	if err != nil {
		return err
	}
	keyPEM, err := res.KeyPEM()
	if err != nil {
		return err
	}
	if err := writeNew(*out+".key", keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(*out+".crt", certPEM, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "issued serial %s for %v %v, valid until %s, in %v\n",
		provider.FormatSerial(res.Certificate.SerialNumber), res.Certificate.DNSNames, res.Certificate.IPAddresses,
		res.Certificate.NotAfter.UTC().Format(time.RFC3339), time.Since(start).Round(time.Millisecond))
	return nil
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

// readCertificates reads the PEM certificates of a file, in order.
func readCertificates(name string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: unexpected PEM block %q", name, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", name)
	}
	return certs, nil
}

// loadOrCreateKey reads a PEM private key, or creates an ECDSA P-256 one
// (mode 0600) when the file does not exist.
func loadOrCreateKey(name string) (crypto.Signer, error) {
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := writeNew(name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", name)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: unexpected PEM block %q", name, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %s block does not parse", name, block.Type)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T is not a signing key", name, key)
	}
	return s, nil
}

// writeNew writes a file that must not exist yet.
func writeNew(name string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
