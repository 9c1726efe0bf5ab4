package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// rotateUsage is the usage line of the rotate command.
const rotateUsage = "kvmpki-ca rotate (-dir DIR | -db URL) (begin | status | retire [-force])"

// rotate runs a step of a CA rotation:
//
//	kvmpki-ca rotate -dir DIR begin           make the successor CA; it issues from now on
//	kvmpki-ca rotate -dir DIR status          list the CA generations, the phase and the driver lease
//	kvmpki-ca rotate -dir DIR retire [-force] retire the previous CA
//
// retire refuses while the previous CA has unexpired, unrevoked
// certificates; -force retires it anyway, and those certificates stop
// being trusted.
//
// begin and retire take the rotation lease for their step (a minute), so
// that they never run alongside a driver (ca.Manager.Rotate on a
// management server sharing the store): while one holds the lease they
// are refused, naming it.
func (c *command) rotate(ctx context.Context, args []string) error {
	fs := c.flags()
	force := fs.Bool("force", false, "retire: retire even though the previous CA still has unexpired, unrevoked certificates, which stop being trusted")
	fs.Usage = func() {
		fmt.Fprintln(c.stderr, "usage:", rotateUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return &usageError{"rotate needs a step: begin, status or retire"}
	}
	step, rest := fs.Arg(0), fs.Args()[1:]
	// The flags may follow the step too (retire -force).
	if err := c.parse(rest); err != nil {
		return err
	}
	if *force && step != "retire" {
		return &usageError{"-force goes with retire only"}
	}
	run := map[string]func(context.Context, *openCA) error{
		"begin": func(ctx context.Context, ca *openCA) error {
			return c.underLease(ctx, ca, "begin", func() error { return c.rotateBegin(ctx, ca) })
		},
		"status": c.rotateStatus,
		"retire": func(ctx context.Context, ca *openCA) error {
			return c.underLease(ctx, ca, "retire", func() error { return c.rotateRetire(ctx, ca, *force) })
		},
	}[step]
	if run == nil {
		return &usageError{fmt.Sprintf("unknown rotate step %q (want begin, status or retire)", step)}
	}
	ca, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer ca.Close()
	return run(ctx, ca)
}

// stepLease is how long the lease a rotate step takes lasts: the step
// is done well within it, and a step that crashed holds drivers up for
// no longer.
const stepLease = time.Minute

// underLease runs step under the rotation lease when the store keeps
// one, and releases it after.
func (c *command) underLease(ctx context.Context, ca *openCA, step string, run func() error) error {
	if _, ok := ca.store.(rootca.RotationLeaseStore); !ok {
		return run()
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown host"
	}
	holder := fmt.Sprintf("kvmpki-ca rotate %s on %.64s pid %d %s", step, host, os.Getpid(), rand.Text()[:12])
	if err := ca.ClaimCARotation(ctx, holder, stepLease); err != nil {
		if errors.Is(err, rootca.ErrRotationBusy) {
			return fmt.Errorf("%w: a rotation driver is at work; wait until it is done or its lease expires", err)
		}
		return err
	}
	defer func() {
		if err := ca.ReleaseCARotation(context.WithoutCancel(ctx), holder); err != nil {
			fmt.Fprintf(c.stderr, "warning: the rotation lease was not released (it expires within %v): %v\n", stepLease, err)
		}
	}()
	return run()
}

func (c *command) rotateBegin(ctx context.Context, ca *openCA) error {
	cert, err := ca.BeginRotation(ctx, nil)
	if errors.Is(err, rootca.ErrRotationInProgress) {
		return fmt.Errorf("%w; see 'kvmpki-ca rotate status', and retire the previous CA first", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "began rotation: new CA %s\nserial %s, valid until %s; it issues every certificate from now on\n",
		cert.Subject, provider.FormatSerial(cert.SerialNumber), cert.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintln(c.stdout, "next: install the new bundle (kvmpki-ca bundle) on every host, renew every certificate, then run 'kvmpki-ca rotate retire'")
	return nil
}

func (c *command) rotateStatus(ctx context.Context, ca *openCA) error {
	gens, err := ca.RotationStatus(ctx)
	if err != nil {
		return err
	}
	trusted := 0
	for _, g := range gens {
		state := "trusted"
		switch {
		case g.Issuing:
			state = "issuing"
			trusted++
		case !g.RetiredAt.IsZero():
			state = "retired " + g.RetiredAt.UTC().Format(time.RFC3339)
		default:
			trusted++
		}
		fmt.Fprintf(c.stdout, "generation %d\t%s\t%s\tserial %s\tvalid until %s\t%d live certificates\n",
			g.Generation, state, g.Certificate.Subject, provider.FormatSerial(g.Certificate.SerialNumber),
			g.Certificate.NotAfter.UTC().Format(time.RFC3339), g.Leaves)
	}
	lease := &rootca.RotationLease{}
	if ls, ok := ca.store.(rootca.RotationLeaseStore); ok {
		if lease, err = ls.RotationLease(ctx); err != nil {
			return err
		}
	}
	// The phase of the last rotation, as a driver (ca.Manager.Rotate)
	// records it: begun, then retired with the bundle push pending, then
	// done.
	switch {
	case trusted > 1:
		fmt.Fprintln(c.stdout, "phase: begun (the new CA issues; hosts get its certificates, then the previous CA is retired)")
	case lease.PushPending:
		fmt.Fprintln(c.stdout, "phase: retired, bundle push pending (the next driver run pushes the bundle without the retired CA to every host)")
	case len(gens) > 1:
		fmt.Fprintln(c.stdout, "phase: done")
	}
	switch {
	case lease.Holder == "":
		fmt.Fprintln(c.stdout, "driver lease: free")
	case lease.Until.After(time.Now()):
		fmt.Fprintf(c.stdout, "driver lease: held by %q until %s\n", lease.Holder, lease.Until.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(c.stdout, "driver lease: %q expired at %s (its driver stopped; the next one takes over)\n", lease.Holder, lease.Until.UTC().Format(time.RFC3339))
	}
	if trusted > 1 || lease.PushPending {
		fmt.Fprintln(c.stdout, "rotation in progress")
	} else {
		fmt.Fprintln(c.stdout, "no rotation in progress")
	}
	return nil
}

func (c *command) rotateRetire(ctx context.Context, ca *openCA, force bool) error {
	res, err := ca.RetirePrevious(ctx, &rootca.RetireOptions{Force: force})
	if errors.Is(err, rootca.ErrNotRetirable) {
		return errors.New("no rotation in progress: nothing to retire")
	}
	var remain *rootca.RemainingLeavesError
	if errors.As(err, &remain) {
		for _, s := range remain.Serials {
			fmt.Fprintf(c.stderr, "still live: %s\n", provider.FormatSerial(s))
		}
		return fmt.Errorf("%w (or -force: they stop being trusted)", err)
	}
	if err != nil {
		return err
	}
	for _, cert := range res.Retired {
		fmt.Fprintf(c.stdout, "retired CA %s, serial %s\n", cert.Subject, provider.FormatSerial(cert.SerialNumber))
	}
	for _, s := range res.Abandoned {
		fmt.Fprintf(c.stdout, "no longer trusted: %s\n", provider.FormatSerial(s))
	}
	fmt.Fprintln(c.stdout, "next: install the new bundle (kvmpki-ca bundle) on every host")
	return nil
}
