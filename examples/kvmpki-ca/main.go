// Command kvmpki-ca is a small command-line front end over package rootca,
// for operators and scripted checks.
//
//	kvmpki-ca init   -dir DIR [-key-type rsa|ecdsa] [-key-size N] [-issuer-dn DN] [-validity-days N]
//	kvmpki-ca issue  -dir DIR (-csr FILE | -key-out FILE) -role host|client|server [-dns a,b] [-ip x,y]
//	                 [-cn NAME] [-validity-days N] [-key-type rsa|ecdsa] [-key-size N] [-chain]
//	                 [-insecure-allow-csr-names] -out FILE
//
// A CSR's names go into the certificate only when -dns or -ip list them
// too, unless -insecure-allow-csr-names.
//
//	kvmpki-ca bundle -dir DIR
//	kvmpki-ca revoke -dir DIR -serial HEX [-reason NAME]
//	kvmpki-ca crl    -dir DIR -out FILE [-der]
//	kvmpki-ca list   -dir DIR
//	kvmpki-ca rotate -dir DIR (begin | status | retire [-force])
//	kvmpki-ca serve  -dir DIR -listen ADDR -agent-listen ADDR [-names a,b] [-ips x,y]
//	kvmpki-ca provision -dir DIR -ssh USER@HOST:PORT -identity KEYFILE -known-hosts FILE -remote-bin DIR
//	                 [-names a,b] [-ips x,y] [-remote-dir DIR] [-reload-command CMD]
//
// provision provisions one KVM host over SSH (package ca's SSHHost): the
// host key is checked against -known-hosts, keystore-setup and
// keystore-cert-import run from -remote-bin on the host, and no secret or
// PEM is ever on a command line.
//
// crl writes one CRL per trusted CA: during a CA rotation (kvmpki-ca
// rotate) the PEM file holds the current CA's CRL and the previous CA's,
// as libvirtd and QEMU read them; -der then fails, since DER holds one.
//
// serve runs package ca's HTTP handlers (the CA bundle at /ca.pem, the CRL
// at /crl, OCSP at /ocsp) on -listen, and a strict agent-port TLS listener
// on -agent-listen that answers a line "ping" with "pong" after a verified
// handshake and logs each refusal with its reason; SIGTERM stops it.
//
// Every command takes -db URL instead of -dir, for a CA that several
// management servers share in PostgreSQL (postgres://USER@HOST/DATABASE)
// or MariaDB (mysql://USER@tcp(HOST:PORT)/DATABASE); the database
// password comes from $KVMPKI_DB_PASSWORD (or PostgreSQL's PGPASSWORD and
// ~/.pgpass), not the URL. Without -db, the CA lives in the SQLite file
// ca.db in -dir.
//
// The CA key password comes from the KVMPKI_CA_PASSWORD environment
// variable or from the file named by -password-file, never from an
// argument. Errors go to standard error, with exit status 1 (2 for usage
// errors).
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvmpki/kvmpki/internal/safefs"
	"github.com/kvmpki/kvmpki/internal/secret"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// PasswordEnv is the environment variable that holds the CA key password.
const PasswordEnv = "KVMPKI_CA_PASSWORD"

const usage = `usage: kvmpki-ca COMMAND (-dir DIR | -db URL) [flags]

commands:
  init     create the CA in DIR
  issue    issue a certificate from a CSR (-csr) or with a generated key (-key-out)
  bundle   print the CA certificate bundle (PEM)
  revoke   revoke a certificate by serial
  crl      write a signed CRL
  list     list issued certificates
  rotate   rotate the CA: begin, status, retire [-force]
  serve    serve the CA bundle, CRL and OCSP over HTTP and a strict agent port
  provision  provision a KVM host's certificate over SSH

The CA key password is read from $KVMPKI_CA_PASSWORD or -password-file.
With -db postgres://USER@HOST/DB or -db mysql://USER@tcp(HOST:PORT)/DB the
CA lives in a database that several management servers share; its password
is read from $KVMPKI_DB_PASSWORD.
Run 'kvmpki-ca COMMAND -h' for the flags of a command.
`

// usageError marks errors that deserve exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	if err == nil {
		return
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, "kvmpki-ca:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &usageError{"no command"}
	}
	cmd, args := args[0], args[1:]
	c := &command{name: cmd, stdout: stdout, stderr: stderr, getenv: getenv}
	switch cmd {
	case "init":
		return c.init(ctx, args)
	case "provision":
		return c.provision(ctx, args)
	case "issue":
		return c.issue(ctx, args)
	case "bundle":
		return c.bundle(ctx, args)
	case "revoke":
		return c.revoke(ctx, args)
	case "crl":
		return c.crl(ctx, args)
	case "list":
		return c.list(ctx, args)
	case "serve":
		return c.serve(ctx, args)
	case "rotate":
		return c.rotate(ctx, args)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return &usageError{fmt.Sprintf("unknown command %q", cmd)}
}

type command struct {
	// insecureAllowCSRNames signs the names a CSR asks for even when no
	// -dns or -ip lists them.
	insecureAllowCSRNames bool
	name                  string
	stdout, stderr        io.Writer
	getenv                func(string) string
	fs                    *flag.FlagSet
	dir                   string
	db                    string
	passwordFile          string
}

func (c *command) flags() *flag.FlagSet {
	c.fs = flag.NewFlagSet("kvmpki-ca "+c.name, flag.ContinueOnError)
	c.fs.SetOutput(c.stderr)
	c.fs.StringVar(&c.dir, "dir", "", "CA `directory`, holding the SQLite database ca.db (required without -db)")
	c.fs.StringVar(&c.db, "db", "", "shared CA database `URL`: postgres://USER@HOST/DB or mysql://USER@tcp(HOST:PORT)/DB (password from $"+DBPasswordEnv+")")
	c.fs.StringVar(&c.passwordFile, "password-file", "", "read the CA key password from `FILE` instead of $"+PasswordEnv)
	return c.fs
}

func (c *command) parse(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if c.fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", c.fs.Arg(0))}
	}
	switch {
	case c.dir == "" && c.db == "":
		return &usageError{"-dir or -db is required"}
	case c.dir != "" && c.db != "":
		return &usageError{"-dir and -db exclude each other"}
	}
	c.warnPasswordInURL()
	return nil
}

// password returns the CA key password from -password-file or the
// environment. A trailing newline in the file is not part of it.
func (c *command) password() ([]byte, error) {
	return secret.Password(c.passwordFile, PasswordEnv, c.getenv, "CA key")
}

// openCA is a CA opened by the command, with the store it owns.
type openCA struct {
	*rootca.CA
	store rootca.Store
}

// Close closes the CA, then its store.
func (o *openCA) Close() error {
	return errors.Join(o.CA.Close(), o.store.Close())
}

// dbFileName is the SQLite database of the CA in -dir.
const dbFileName = "ca.db"

// dbPath returns the path of the CA's database in c.dir.
func (c *command) dbPath() string { return filepath.Join(c.dir, dbFileName) }

// refuseCAFile refuses an output file that is the CA's database or one of
// SQLite's files beside it: writing there would destroy the CA.
func (c *command) refuseCAFile(flagName, path string) error {
	if c.db != "" {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	out, outErr := os.Stat(abs)
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		db := c.dbPath() + suffix
		dbAbs, err := filepath.Abs(db)
		if err != nil {
			return err
		}
		same := dbAbs == abs
		if fi, err := os.Stat(db); err == nil && outErr == nil && os.SameFile(fi, out) {
			same = true
		}
		if same {
			return &usageError{fmt.Sprintf("%s %s is the CA's database", flagName, path)}
		}
	}
	return nil
}

// noCA is the error for a directory that holds no CA.
func (c *command) noCA(err error) error {
	return fmt.Errorf("no CA in %s (run '%s'): %w", c.location(), c.initHint(), err)
}

// open opens the existing CA; rootca.Open never creates one, and fails
// with provider.ErrNotFound on a store that holds none (a wrong database,
// or one a failed init left behind).
func (c *command) open(ctx context.Context) (*openCA, error) {
	if c.db == "" {
		// Do not leave an empty database in a directory without a CA.
		if _, err := os.Stat(c.dbPath()); err != nil {
			return nil, c.noCA(err)
		}
	}
	// Fail early, and without rootca's wrapping, when there is none.
	if _, err := c.password(); err != nil {
		return nil, err
	}
	store, err := c.openStore(ctx)
	if err != nil {
		return nil, err
	}
	ca, err := rootca.Open(ctx, store, &rootca.Options{
		Password: c.password, InsecureAllowCSRNames: c.insecureAllowCSRNames,
		RevocationPollInterval: -1, // one command, then exit
	})
	if err != nil {
		store.Close()
		if errors.Is(err, provider.ErrNotFound) {
			return nil, c.noCA(err)
		}
		return nil, err
	}
	return &openCA{CA: ca, store: store}, nil
}

// openStore opens the -db database, or the SQLite file in -dir (created
// with -dir, mode 0700, if needed).
func (c *command) openStore(ctx context.Context) (rootca.Store, error) {
	if c.db != "" {
		return c.openDB(ctx)
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, err
	}
	return sqlite.Open(ctx, c.dbPath())
}

func (c *command) init(ctx context.Context, args []string) error {
	fs := c.flags()
	keyType := fs.String("key-type", "ecdsa", "CA key `type`: rsa or ecdsa")
	keySize := fs.Int("key-size", 0, "CA key size in `bits` (RSA modulus, or ECDSA curve 256/384/521; default 3072 for RSA, 256 for ECDSA)")
	issuerDN := fs.String("issuer-dn", "CN=kvmpki root CA,O=kvmpki", "CA subject `DN` in RFC 4514 form")
	days := fs.Int("validity-days", 10*365, "CA validity in `days`")
	if err := c.parse(args); err != nil {
		return err
	}
	alg, err := parseKeyType(*keyType)
	if err != nil {
		return err
	}
	if *days <= 0 || *days > maxDays {
		return &usageError{fmt.Sprintf("-validity-days must be between 1 and %d", maxDays)}
	}
	subject, err := rootca.ParseDN(*issuerDN)
	if err != nil {
		return &usageError{err.Error()}
	}
	if _, err := c.password(); err != nil {
		return err
	}
	store, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	// Create decides in the store: of several servers running init on
	// one database at once, exactly one creates the CA.
	ca, err := rootca.Create(ctx, store, &rootca.CreateOptions{
		Options: rootca.Options{
			Password:               c.password,
			RevocationPollInterval: -1,
		},
		KeyAlgorithm: alg,
		KeySize:      *keySize,
		Subject:      subject,
		Validity:     time.Duration(*days) * 24 * time.Hour,
	})
	if errors.Is(err, rootca.ErrAuthorityExists) {
		return fmt.Errorf("%s already holds a CA", c.location())
	}
	if err != nil {
		return err
	}
	defer ca.Close()
	cert := ca.Certificate()
	fmt.Fprintf(c.stdout, "created CA %s in %s\nserial %s, %v, valid until %s\n", cert.Subject, c.location(),
		provider.FormatSerial(cert.SerialNumber), cert.SignatureAlgorithm, cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// maxDays is the largest -validity-days whose time.Duration does not
// overflow (about 292 years): a larger one would wrap around silently.
const maxDays = int(math.MaxInt64 / int64(24*time.Hour))

func parseKeyType(s string) (provider.KeyAlgorithm, error) {
	switch strings.ToLower(s) {
	case "rsa":
		return provider.KeyAlgorithmRSA, nil
	case "ecdsa", "ec":
		return provider.KeyAlgorithmECDSA, nil
	}
	return 0, &usageError{fmt.Sprintf("unknown key type %q (want rsa or ecdsa)", s)}
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

func (c *command) issue(ctx context.Context, args []string) error {
	fs := c.flags()
	csrFile := fs.String("csr", "", "sign the PKCS #10 CSR in `FILE` (PEM or DER)")
	keyOut := fs.String("key-out", "", "generate a key and write it to `FILE` (PKCS #8 PEM, mode 0600)")
	roleName := fs.String("role", "", "certificate role: host, client or server (required)")
	dns := fs.String("dns", "", "comma-separated DNS `names`")
	ips := fs.String("ip", "", "comma-separated IP `addresses`")
	cn := fs.String("cn", "", "subject common `name` (default: the CSR's, or the first name)")
	days := fs.Int("validity-days", 0, "validity in `days` (default 365)")
	keyType := fs.String("key-type", "", "generated key `type`: rsa or ecdsa (default rsa)")
	keySize := fs.Int("key-size", 0, "generated key size in `bits` (default 2048 for RSA, 256 for ECDSA)")
	out := fs.String("out", "", "write the certificate to `FILE` (PEM; required)")
	chain := fs.Bool("chain", false, "append the CA chain to the certificate file")
	fs.BoolVar(&c.insecureAllowCSRNames, "insecure-allow-csr-names", false,
		"also sign names the CSR asks for that -dns and -ip do not list (by default they are left out)")
	if err := c.parse(args); err != nil {
		return err
	}
	if (*csrFile == "") == (*keyOut == "") {
		return &usageError{"give exactly one of -csr and -key-out"}
	}
	if *out == "" {
		return &usageError{"-out is required"}
	}
	if err := c.refuseCAFile("-out", *out); err != nil {
		return err
	}
	if *keyOut != "" {
		if err := c.refuseCAFile("-key-out", *keyOut); err != nil {
			return err
		}
	}
	if *roleName == "" {
		return &usageError{"-role is required (host, client or server)"}
	}
	role, err := provider.ParseRole(*roleName)
	if err != nil {
		return &usageError{err.Error()}
	}
	if *days < 0 || *days > maxDays {
		return &usageError{fmt.Sprintf("-validity-days must be between 0 and %d", maxDays)}
	}
	req := &provider.IssueRequest{
		CommonName: *cn,
		DNSNames:   splitList(*dns),
		Role:       role,
		Validity:   time.Duration(*days) * 24 * time.Hour,
		KeySize:    *keySize,
	}
	if req.IPAddresses, err = parseIPs("-ip", *ips); err != nil {
		return err
	}
	if *keyType != "" {
		if req.KeyAlgorithm, err = parseKeyType(*keyType); err != nil {
			return err
		}
	}
	if *csrFile != "" {
		if req.CSR, err = readLimited(*csrFile, provider.MaxCSRSize); err != nil {
			return err
		}
	}
	// Claim the output files before issuing: the CA records every
	// certificate it issues, so one must not be issued for a key or
	// certificate that then cannot be written (an existing -key-out, a
	// missing directory). Each is written to a temporary file next to it
	// and renamed over it: a link planted at the path is replaced, never
	// written through, and a key never replaces an existing file.
	var keyFile *safefs.Pending
	if *keyOut != "" {
		if keyFile, err = safefs.NewPending(*keyOut, 0o600, &safefs.Options{NoReplace: true}); err != nil {
			return err
		}
		defer keyFile.Abort()
	}
	certFile, err := safefs.NewPending(*out, 0o644, nil)
	if err != nil {
		return err
	}
	defer certFile.Abort()
	if keyFile != nil && keyFile.SameTarget(certFile) {
		return &usageError{"-out and -key-out name the same file"}
	}
	ca, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer ca.Close()
	res, err := ca.Issue(ctx, req)
	if err != nil {
		return err
	}
	if keyFile != nil {
		keyPEM, err := res.KeyPEM()
		if err != nil {
			return err
		}
		err = keyFile.Commit(keyPEM)
		clear(keyPEM)
		if err != nil {
			return err
		}
	}
	certs := []*x509.Certificate{res.Certificate}
	if *chain {
		certs = append(certs, res.Chain...)
	}
	if err := certFile.Commit(provider.EncodeCertificates(certs...)); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "issued %s serial %s, valid until %s\n", res.Certificate.Subject,
		provider.FormatSerial(res.Certificate.SerialNumber), res.Certificate.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// readLimited reads a file, refusing one larger than limit bytes.
func readLimited(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

// withCA parses the common flags only, opens the CA and runs do on it.
func (c *command) withCA(ctx context.Context, args []string, do func(*openCA) error) error {
	c.flags()
	if err := c.parse(args); err != nil {
		return err
	}
	ca, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer ca.Close()
	return do(ca)
}

func (c *command) bundle(ctx context.Context, args []string) error {
	return c.withCA(ctx, args, func(ca *openCA) error {
		b, err := provider.CABundle(ctx, ca)
		if err != nil {
			return err
		}
		_, err = c.stdout.Write(b)
		return err
	})
}

func (c *command) revoke(ctx context.Context, args []string) error {
	fs := c.flags()
	serialHex := fs.String("serial", "", "serial number in `hex` (required)")
	reasonName := fs.String("reason", "unspecified", "RFC 5280 `reason`, e.g. keyCompromise, superseded, cessationOfOperation")
	if err := c.parse(args); err != nil {
		return err
	}
	if *serialHex == "" {
		return &usageError{"-serial is required"}
	}
	serial, err := provider.ParseSerial(*serialHex)
	if err != nil {
		return &usageError{err.Error()}
	}
	reason, err := provider.ParseRevocationReason(*reasonName)
	if err != nil {
		return &usageError{err.Error()}
	}
	ca, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer ca.Close()
	if err := ca.Revoke(ctx, &provider.RevokeRequest{Serial: serial, Reason: reason}); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "revoked %s (%s)\n", provider.FormatSerial(serial), reason)
	return nil
}

func (c *command) crl(ctx context.Context, args []string) error {
	fs := c.flags()
	out := fs.String("out", "", "write the CRL to `FILE` (required)")
	der := fs.Bool("der", false, "write DER instead of PEM")
	if err := c.parse(args); err != nil {
		return err
	}
	if *out == "" {
		return &usageError{"-out is required"}
	}
	if err := c.refuseCAFile("-out", *out); err != nil {
		return err
	}
	ca, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer ca.Close()
	// One CRL per trusted CA: during a rotation libvirtd and QEMU read
	// both from one PEM file (cacrl.pem, ca-crl.pem), the current CA's
	// first.
	crls, err := ca.SignCRLs(ctx)
	if err != nil {
		return err
	}
	var data []byte
	switch {
	case *der && len(crls) > 1:
		return fmt.Errorf("a rotation is in progress: %d CAs are trusted and a DER file holds one CRL; write PEM", len(crls))
	case *der:
		data = crls[0].Raw
	default:
		for _, crl := range crls {
			data = append(data, rootca.EncodeCRL(crl.Raw)...)
		}
	}
	// Through a temporary file renamed over *out: a link planted there is
	// replaced, not written through.
	if err := safefs.WriteFile(*out, data, 0o644, nil); err != nil {
		return err
	}
	// Scripts read this line; a rotation adds the issuer to each.
	for _, crl := range crls {
		issuer := ""
		if len(crls) > 1 {
			issuer = " of " + crl.Issuer.String()
		}
		fmt.Fprintf(c.stdout, "CRL%s number %s with %d entries, next update %s\n", issuer, crl.Number,
			len(crl.RevokedCertificateEntries), crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

func (c *command) list(ctx context.Context, args []string) error {
	return c.withCA(ctx, args, func(ca *openCA) error {
		recs, err := ca.ListCertificates(ctx, nil)
		if err != nil {
			return err
		}
		for _, r := range recs {
			fmt.Fprintf(c.stdout, "%s %s %s %s\n", provider.FormatSerial(r.Serial), r.Status,
				r.NotAfter.UTC().Format(time.RFC3339), r.Subject)
		}
		return nil
	})
}
