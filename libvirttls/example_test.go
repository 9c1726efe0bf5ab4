package libvirttls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/kvmpki/kvmpki/libvirttls"
)

// AllowedDN prints a subject in the order libvirtd compares it, which is
// the reverse of pkix.Name.String.
func ExampleAllowedDN() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{Organization: []string{"Example"}, CommonName: "kvm1.example.org"},
		NotBefore:    time.Now(), NotAfter: time.Now().Add(time.Hour),
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	cert, _ := x509.ParseCertificate(der)

	dn, err := libvirttls.AllowedDN(cert)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(dn)
	fmt.Println(cert.Subject.String())
	// Output:
	// O=Example,CN=kvm1.example.org
	// CN=kvm1.example.org,O=Example
}

// Secure a host from its CloudStack agent credentials: print the plan,
// apply it, then check the host.
func ExampleNewPlan() {
	ctx := context.Background()
	creds, err := libvirttls.LoadCredentials(ctx, "/etc/cloudstack/agent")
	if err != nil {
		fmt.Println(err)
		return
	}
	opts := &libvirttls.Config{
		AllowedDNs:      []string{"CN=kvm*.example.org"},
		MigrateTLSForce: true,
	}
	plan, err := libvirttls.NewPlan(ctx, creds, opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(plan.Diff())
	if err := plan.Apply(ctx, &libvirttls.ApplyOptions{RunAction: libvirttls.ExecAction}); err != nil {
		fmt.Println(err)
		return
	}
	status := libvirttls.CheckHost(ctx, opts, &libvirttls.CheckHostOptions{DialAddr: "kvm1.example.org:16514"})
	if !status.Secured {
		fmt.Fprintln(os.Stderr, status)
	}
}
