package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvmpki/kvmpki/libvirttls"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// libvirttlsSection secures a host as "cloudstack-setup-agent -s" would,
// under a temporary root instead of /: it issues the host's credentials,
// plans the PKI layout and the libvirtd.conf and qemu.conf edits (with a
// CRL, a DN allow list and native TLS for migration), applies them, and
// reports the host's secured state before and after a key goes missing.
func libvirttlsSection(ctx context.Context, out io.Writer, ca *rootca.CA, dir string) error {
	res, err := ca.Issue(ctx, &provider.IssueRequest{
		CommonName:   "kvm1.example.org",
		DNSNames:     []string{"kvm1.example.org"},
		IPAddresses:  []net.IP{net.ParseIP("10.0.0.1")},
		Role:         provider.RoleHost,
		KeyAlgorithm: provider.KeyAlgorithmECDSA,
		Validity:     24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("issue host certificate: %w", err)
	}
	certPEM, err := res.ChainPEM()
	if err != nil {
		return err
	}
	keyPEM, err := res.KeyPEM()
	if err != nil {
		return err
	}
	// The bundle holds every CA certificate: the issuing CA alone would
	// not do under an intermediate CA.
	bundle, err := provider.CABundle(ctx, ca)
	if err != nil {
		return err
	}
	crl, err := ca.SignCRL(ctx)
	if err != nil {
		return err
	}
	creds := &libvirttls.Credentials{
		CACert: bundle,
		Cert:   certPEM,
		Key:    keyPEM,
		CRL:    crl.Raw,
	}

	root := filepath.Join(dir, "kvm1-root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	opts := &libvirttls.Config{
		Root:            root,
		AllowedClients:  []*x509.Certificate{res.Certificate},
		MigrateTLSForce: true,
	}
	plan, err := libvirttls.NewPlan(ctx, creds, opts)
	if err != nil {
		return err
	}
	files, edits := 0, 0
	for _, ch := range plan.Changes {
		switch ch.Kind {
		case libvirttls.ChangeFile, libvirttls.ChangeLink:
			files++
		case libvirttls.ChangeConfig:
			edits++
		}
	}
	fmt.Fprintf(out, "secure host:   kvm1 under a temporary root: %d PKI files, %d config files\n", files, edits)
	libvirtd, err := opts.LibvirtdSettings(true)
	if err != nil {
		return err
	}
	for _, s := range libvirtd {
		switch s.Key {
		case "listen_tls", "crl_file", "tls_allowed_dn_list":
			fmt.Fprintf(out, "  libvirtd     %s\n", s)
		}
	}
	for _, s := range opts.QEMUSettings() {
		if strings.HasPrefix(s.Key, "migrate_tls") {
			fmt.Fprintf(out, "  qemu         %s\n", s)
		}
	}
	if err := plan.Apply(ctx, nil); err != nil {
		return err
	}
	for _, a := range plan.Actions {
		fmt.Fprintf(out, "  action       %s (not run under a temporary root)\n", strings.Join(a.Command, " "))
	}
	status := libvirttls.CheckHost(ctx, opts, nil)
	fmt.Fprintf(out, "  state        %s\n", status)
	if !status.Secured {
		return status.Err()
	}
	again, err := libvirttls.NewPlan(ctx, creds, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  plan again   %s", again.Diff())

	// A host whose key went missing is reported as such, with the reason.
	if err := os.Remove(opts.DiskPath(libvirttls.ServerKeyPath)); err != nil {
		return err
	}
	status = libvirttls.CheckHost(ctx, opts, nil)
	if status.Secured {
		return fmt.Errorf("a host without its server key was reported secured")
	}
	fmt.Fprintf(out, "  key removed  %s\n", status)
	return nil
}
