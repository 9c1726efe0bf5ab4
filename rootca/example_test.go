package rootca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// A host's agent sends a CSR; the platform names the host as it knows it
// (names in the CSR that the platform does not list are left out), issues,
// and later revokes.
func Example() {
	ctx := context.Background()
	// Create makes the CA once, at deployment; later starts Open it.
	ca, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{
		Password: func() ([]byte, error) { return []byte("from the platform's secret store"), nil },
	}})
	if err != nil {
		panic(err)
	}

	hostKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "kvm1.example.org"},
	}, hostKey)
	res, err := ca.Issue(ctx, &provider.IssueRequest{
		CSR:         csr,
		DNSNames:    []string{"kvm1", "kvm1.example.org"},
		IPAddresses: []net.IP{net.ParseIP("192.0.2.11")},
		Role:        provider.RoleHost,
	})
	if err != nil {
		panic(err)
	}
	cert := res.Certificate
	fmt.Println("subject:", cert.Subject)
	fmt.Println("names:", cert.DNSNames, cert.IPAddresses)
	fmt.Println("role:", provider.RoleOf(cert))

	err = ca.Revoke(ctx, &provider.RevokeRequest{Serial: cert.SerialNumber, Reason: provider.ReasonKeyCompromise})
	if err != nil {
		panic(err)
	}
	err = ca.VerifyPeer(ctx, &provider.VerifyRequest{Certificates: []*x509.Certificate{cert}, Usage: provider.UsageClientAuth})
	fmt.Println("revoked refused:", err != nil)

	crl, err := ca.SignCRL(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("CRL number", crl.Number, "with", len(crl.RevokedCertificateEntries), "entry")
	// Output:
	// subject: CN=kvm1.example.org
	// names: [kvm1 kvm1.example.org] [192.0.2.11]
	// role: host
	// revoked refused: true
	// CRL number 1 with 1 entry
}

// A request the names policy forbids is refused, with the reason.
func ExampleCA_Issue_refused() {
	ctx := context.Background()
	ca, _ := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: mustKey()}})
	_, err := ca.Issue(ctx, &provider.IssueRequest{CommonName: "*.example.org", Role: provider.RoleHost})
	fmt.Println(err)
	// Output:
	// provider: invalid request: common name: DNS name "*.example.org" contains the character '*'
}

func mustKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// Names from CloudStack's ca.plugin.root.issuer.dn setting.
func ExampleParseDN() {
	name, err := rootca.ParseDN("CN=ca.cloudstack.apache.org,O=Example,C=DE")
	if err != nil {
		panic(err)
	}
	fmt.Println(name.CommonName, name.Organization, name.Country)
	// Output:
	// ca.cloudstack.apache.org [Example] [DE]
}
