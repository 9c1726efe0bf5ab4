package keystore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/kvmpki/kvmpki/keystore"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// The host onboarding of a CloudStack-style agent: Setup makes the key,
// keystore and CSR; the CA (here an in-memory rootca) issues the
// certificate; Import installs it; CheckSecured confirms the result.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "agent-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	setup, err := keystore.Setup(ctx, dir, &keystore.SetupOptions{
		CommonName:  "kvm1.example.org",
		IPAddresses: []net.IP{net.ParseIP("192.0.2.10")},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("setup:", filepath.Base(setup.Keystore), setup.Format, "CSR for", setup.Request.Subject.CommonName)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	ca, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: caKey}})
	if err != nil {
		panic(err)
	}
	defer ca.Close()
	issued, err := ca.Issue(ctx, &provider.IssueRequest{
		CSR:         setup.CSR,
		DNSNames:    []string{"kvm1.example.org"},
		IPAddresses: []net.IP{net.ParseIP("192.0.2.10")},
		Role:        provider.RoleHost,
	})
	if err != nil {
		panic(err)
	}
	bundle, err := provider.CABundle(ctx, ca)
	if err != nil {
		panic(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issued.Certificate.Raw})

	imported, err := keystore.Import(ctx, dir, certPEM, bundle, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("import: chain of", len(imported.Chain), "and", len(imported.CACerts), "trusted CA")

	if _, err := keystore.CheckSecured(context.Background(), dir, nil); err != nil {
		fmt.Println("not secured:", err)
		return
	}
	fmt.Println("secured")
	// Output:
	// setup: cloud.jks PKCS12 CSR for kvm1.example.org
	// import: chain of 2 and 1 trusted CA
	// secured
}

// Parse reads a keystore by its content: this file is named .jks but holds
// PKCS #12, as keytool writes by default since JDK 9. Marshal converts it.
func ExampleParse() {
	data, err := os.ReadFile("testdata/keytool-default.jks")
	if err != nil {
		panic(err)
	}
	ks, err := keystore.Parse(data, []byte("changeit-test-pw"))
	if err != nil {
		panic(err)
	}
	fmt.Println(ks.Format(), ks.Aliases())
	for _, alias := range ks.Aliases() {
		t, _ := ks.EntryType(alias)
		fmt.Println(alias, t)
	}

	jks, err := ks.Marshal(keystore.FormatJKS, []byte("changeit-test-pw"))
	if err != nil {
		panic(err)
	}
	f, _ := keystore.DetectFormat(jks)
	fmt.Println("converted to", f)
	// Output:
	// PKCS12 [cloud cloudca.1]
	// cloud PrivateKeyEntry
	// cloudca.1 trustedCertEntry
	// converted to JKS
}
