package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/kvmpki/kvmpki/migration"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// migrationSection chooses how a guest migrates between hosts from their
// security states: two secured hosts get qemu+tls with native TLS for the
// memory stream too; a secured and an unsecured host are refused with an
// error naming both. It only computes; nothing is dialled.
func migrationSection(ctx context.Context, out io.Writer, ca *rootca.CA, dir string) error {
	// The destination's certificate names the host; its migration
	// network address is not in it, so the plan must name the TLS
	// destination the source QEMU checks.
	kvm2, err := ca.Issue(ctx, &provider.IssueRequest{
		CommonName:   "kvm2.example.org",
		DNSNames:     []string{"kvm2.example.org"},
		IPAddresses:  []net.IP{net.ParseIP("10.0.0.2")},
		Role:         provider.RoleHost,
		KeyAlgorithm: provider.KeyAlgorithmECDSA,
		Validity:     24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("issue kvm2 certificate: %w", err)
	}
	kvm1 := migration.Host{Name: "kvm1", Address: "10.0.0.1", State: migration.StateSecured}
	dst := migration.Host{Name: "kvm2", Address: "10.0.0.2", State: migration.StateSecured,
		MigrationAddress: "192.168.50.2", Certificate: kvm2.Certificate}

	plan, err := migration.NewPlan(kvm1, dst, nil)
	if err != nil {
		return err
	}
	args, err := plan.VirshArgs("vm1")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "migration:     kvm1 -> kvm2, both secured: %s\n", plan.Transport)
	fmt.Fprintf(out, "  flags        %v\n", plan.Flags)
	fmt.Fprintf(out, "  dest URI     %s\n", plan.DestinationURI)
	for _, p := range plan.Params() {
		fmt.Fprintf(out, "  param        %s=%s\n", p.Name, p.Value)
	}
	fmt.Fprintf(out, "  virsh        virsh -c %s %s\n", plan.SourceURI, strings.Join(args, " "))

	kvm3 := migration.Host{Name: "kvm3", Address: "2001:db8::3", State: migration.StateUnsecured, Reason: "libvirtd has listen_tls=0"}
	_, err = migration.NewPlan(kvm1, kvm3, nil)
	if !errors.Is(err, migration.ErrSecurityMismatch) {
		return fmt.Errorf("secured -> unsecured was not refused: %v", err)
	}
	fmt.Fprintf(out, "migration:     kvm1 -> kvm3 refused: %v\n", err)
	return nil
}
