package migration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kvmpki/kvmpki/migration"
)

func ExampleNewPlan() {
	plan, err := migration.NewPlan(
		migration.Host{Name: "kvm1", Address: "2001:db8::1", State: migration.StateSecured},
		migration.Host{Name: "kvm2", Address: "2001:db8::2", State: migration.StateSecured,
			LibvirtPort: 26514, MigrationPort: 49152, TLSName: "kvm2.example.org"},
		nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(plan.Transport)
	fmt.Println(plan.DestinationURI)
	fmt.Println(plan.Flags)
	for _, p := range plan.Params() {
		fmt.Printf("%s=%s\n", p.Name, p.Value)
	}
	args, _ := plan.VirshArgs("vm1")
	fmt.Println("virsh -c", plan.SourceURI, strings.Join(args, " "))
	// Output:
	// native TLS (qemu+tls, VIR_MIGRATE_TLS)
	// qemu+tls://[2001:db8::2]:26514/system
	// VIR_MIGRATE_LIVE|VIR_MIGRATE_TLS
	// migrate_uri=tcp://[2001:db8::2]:49152
	// tls.destination=kvm2.example.org
	// virsh -c qemu+tls://[2001:db8::1]/system migrate --live --tls --domain vm1 --desturi qemu+tls://[2001:db8::2]:26514/system --migrateuri tcp://[2001:db8::2]:49152 --tls-destination kvm2.example.org
}

func ExampleNewPlan_tunnelled() {
	plan, err := migration.NewPlan(
		migration.Host{Address: "kvm1.example.org", State: migration.StateSecured},
		migration.Host{Address: "kvm2.example.org", State: migration.StateSecured},
		&migration.PlanOptions{Tunnelled: true})
	if err != nil {
		panic(err)
	}
	fmt.Println(plan.Flags)
	fmt.Printf("migrate URI: %q\n", plan.MigrateURI)
	// Output:
	// VIR_MIGRATE_LIVE|VIR_MIGRATE_PEER2PEER|VIR_MIGRATE_TUNNELLED
	// migrate URI: ""
}

func ExampleSecurityMismatchError() {
	_, err := migration.NewPlan(
		migration.Host{Name: "kvm1", Address: "10.0.0.1", State: migration.StateSecured},
		migration.Host{Name: "kvm2", Address: "10.0.0.2", State: migration.StateUnsecured, Reason: "listen_tls=0"},
		nil)
	fmt.Println(errors.Is(err, migration.ErrSecurityMismatch))
	fmt.Println(err)
	// Output:
	// true
	// migration: refusing to migrate from kvm1 (10.0.0.1, secured) to kvm2 (10.0.0.2, unsecured: listen_tls=0): a secured host's guests move only to secured hosts, or their memory would cross the network in clear; secure kvm2 (10.0.0.2) or choose a secured destination
}

func ExampleClassify() {
	e := migration.Classify("error: operation failed: job 'migration out' failed: Certificate does not match the hostname 10.0.0.2")
	fmt.Println(errors.Is(e, migration.ErrNameMismatch), e.Name)
	// Output:
	// true 10.0.0.2
}

func ExamplePreflight() {
	cfg, err := migration.LoadPreflightOptions(context.Background(), "/etc/kvmpki/pki/kvm1")
	if err != nil {
		fmt.Println(err)
		return
	}
	err = migration.Preflight(context.Background(),
		migration.Host{Name: "kvm2", Address: "kvm2.example.org", State: migration.StateSecured}, cfg)
	var pe *migration.PreflightError
	if errors.As(err, &pe) {
		fmt.Println(pe.Side, pe.Err)
	}
}
