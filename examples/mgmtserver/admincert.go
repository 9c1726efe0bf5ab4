package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/kvmpki/kvmpki/internal/safefs"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// adminCert issues an administrator's certificate: the client role only
// (extended key usage clientAuth alone) and the marker name adminMarker,
// for a key generated here. It
// writes PREFIX.crt (the certificate and its chain), PREFIX.key (mode
// 0600) and PREFIX.ca.crt (the CA bundle, to verify the API server).
//
//	mgmtserver admin-cert (-dir DIR | -db URL) -out PREFIX [-name NAME] [-validity D] [-force]
func adminCert(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	c := caFlags{getenv: getenv}
	fs := flag.NewFlagSet("mgmtserver admin-cert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	out := fs.String("out", "", "write PREFIX.crt, PREFIX.key and PREFIX.ca.crt (`PREFIX` required)")
	name := fs.String("name", "admin", "the administrator's `name` (the certificate's common name)")
	validity := fs.Duration("validity", defaultAdminValidity, "certificate `validity`")
	force := fs.Bool("force", false, "replace existing files")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if err := c.check(stderr); err != nil {
		return err
	}
	switch {
	case *out == "":
		return &usageError{"-out is required"}
	case *name == "":
		return &usageError{"-name must not be empty"}
	case *validity <= 0:
		return &usageError{"-validity must be positive"}
	}
	if _, err := c.password(); err != nil {
		return err
	}

	// Claim the files before issuing: the CA records every certificate
	// it issues, so none is issued for files that cannot be written.
	// Each is written to a temporary file and renamed over its path, so
	// a link planted there is replaced, never written through.
	fopts := &safefs.Options{NoReplace: !*force}
	var files []*safefs.Pending
	defer func() {
		for _, f := range files {
			f.Abort()
		}
	}()
	for _, spec := range []struct {
		suffix string
		perm   os.FileMode
	}{{".key", 0o600}, {".crt", 0o644}, {".ca.crt", 0o644}} {
		p, err := safefs.NewPending(*out+spec.suffix, spec.perm, fopts)
		if err != nil {
			return fmt.Errorf("%s%s: %w (use -force to replace it)", *out, spec.suffix, err)
		}
		files = append(files, p)
	}
	keyFile, certFile, caFile := files[0], files[1], files[2]

	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	store, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	opts := &rootca.Options{Password: c.password, Logger: logger, MaxValidity: *validity, RevocationPollInterval: -1}
	root, err := openCA(ctx, store, opts, logger)
	if err != nil {
		return err
	}
	defer root.Close()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: *name}}, key)
	if err != nil {
		return err
	}
	res, err := root.Issue(ctx, &provider.IssueRequest{
		CSR: csr, CommonName: *name, DNSNames: []string{adminMarker}, Role: provider.RoleClient, Validity: *validity,
	})
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)
	bundle, err := provider.CABundle(ctx, root)
	if err != nil {
		return err
	}
	err = keyFile.Commit(keyPEM)
	clear(keyPEM)
	if err != nil {
		return err
	}
	if err := certFile.Commit(provider.EncodeCertificates(append([]*x509.Certificate{res.Certificate}, res.Chain...)...)); err != nil {
		return err
	}
	if err := caFile.Commit(bundle); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "issued administrator certificate %s serial %s, valid until %s: %s.crt, %s.key, %s.ca.crt\n",
		res.Certificate.Subject, provider.FormatSerial(res.Certificate.SerialNumber),
		res.Certificate.NotAfter.UTC().Format(time.RFC3339), *out, *out, *out)
	return nil
}
