package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"time"

	"github.com/kvmpki/kvmpki/keystore"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// keystoreSection is a KVM host's onboarding, as CloudStack's agent does it
// with keystore-setup and keystore-cert-import, but in-process and with no
// password on a command line: the host makes its key, keystore and CSR;
// the CA issues a host certificate; the host imports it and reports its
// secured state.
func keystoreSection(ctx context.Context, out io.Writer, ca *rootca.CA, dir string) error {
	agent := filepath.Join(dir, "agent")
	setup, err := keystore.Setup(ctx, agent, &keystore.SetupOptions{
		CommonName:  "kvm1.example.org",
		DNSNames:    []string{"kvm1.example.org"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		return fmt.Errorf("keystore setup: %w", err)
	}
	fmt.Fprintf(out, "host setup:    %s (%s, alias %s), CSR for %s %v %v\n", filepath.Base(setup.Keystore),
		setup.Format, keystore.KeyAlias, setup.Request.Subject, setup.Request.DNSNames, setup.Request.IPAddresses)
	reportSecured(ctx, out, agent)

	res, err := ca.Issue(ctx, &provider.IssueRequest{
		CSR:         setup.CSR,
		DNSNames:    []string{"kvm1.example.org"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		Role:        provider.RoleHost,
	})
	if err != nil {
		return fmt.Errorf("issue the host certificate: %w", err)
	}
	bundle, err := provider.CABundle(ctx, ca)
	if err != nil {
		return err
	}
	certPEM, err := res.ChainPEM() // the leaf and any intermediate CAs
	if err != nil {
		return err
	}
	imported, err := keystore.Import(ctx, agent, certPEM, bundle, nil)
	if err != nil {
		return fmt.Errorf("keystore import: %w", err)
	}
	fmt.Fprintf(out, "host import:   %s, chain of %d, %d trusted CA as %s1; wrote %s, %s, %s\n",
		imported.Chain[0].Subject, len(imported.Chain), len(imported.CACerts), keystore.CAAliasPrefix,
		keystore.CertFile, keystore.KeyFile, keystore.CACertFile)
	if !reportSecured(ctx, out, agent) {
		return errors.New("host not secured after import")
	}
	return nil
}

// reportSecured prints the host's secured state and returns it.
func reportSecured(ctx context.Context, out io.Writer, dir string) bool {
	creds, err := keystore.CheckSecured(ctx, dir, nil)
	var nse *keystore.NotSecuredError
	switch {
	case errors.As(err, &nse) && errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(out, "host secured:  no (%s missing)\n", nse.File)
		return false
	case err != nil:
		fmt.Fprintf(out, "host secured:  no (%v)\n", err)
		return false
	}
	fmt.Fprintf(out, "host secured:  yes, until %s\n", creds.NotAfter.Format(time.DateOnly))
	return true
}
