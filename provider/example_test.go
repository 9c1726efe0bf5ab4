package provider_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// toyCA is a provider that does nothing; it stands for rootca, an ACME or a
// Vault provider.
type toyCA struct{ name string }

func (c *toyCA) Name() string        { return c.name }
func (c *toyCA) Description() string { return "toy CA " + c.name }

func (c *toyCA) CACertificates(context.Context) ([]*x509.Certificate, error) {
	return nil, errors.New("toy: no CA")
}

func (c *toyCA) Issue(context.Context, *provider.IssueRequest) (*provider.IssueResult, error) {
	return nil, &provider.RequestError{Reason: "toy CA"}
}

func (c *toyCA) Revoke(context.Context, *provider.RevokeRequest) error { return provider.ErrNotFound }

func (c *toyCA) Close() error { return nil }

func ExampleRegistry() {
	// The platform builds its registry and registers what it ships; the
	// configuration travels in the factory's closure.
	var reg provider.Registry
	for _, name := range []string{"root", "acme"} {
		err := reg.Register(name, "toy CA "+name, func(ctx context.Context) (provider.Provider, error) {
			return &toyCA{name: name}, nil
		})
		if err != nil {
			fmt.Println(err)
		}
	}

	// listCAProviders.
	for _, info := range reg.List() {
		fmt.Printf("%s: %s\n", info.Name, info.Description)
	}

	// ca.framework.provider.plugin = root.
	p, err := reg.Open(context.Background(), "root")
	if err != nil {
		fmt.Println(err)
		return
	}
	// One provider per process, shared by every request; closed at exit.
	defer p.Close()
	fmt.Println("opened", p.Name())

	// Optional capabilities are reached through the package functions.
	_, err = provider.SignCRL(context.Background(), p)
	fmt.Println(errors.Is(err, errors.ErrUnsupported))

	_, err = reg.Open(context.Background(), "vault")
	fmt.Println(err)
	// Output:
	// acme: toy CA acme
	// root: toy CA root
	// opened root
	// true
	// provider: unknown provider "vault"
}

// verifier stands for a provider that judges TLS peers, such as rootca.
var verifier provider.PeerVerifier

func ExampleVerifyClientConnection() {
	// A server (libvirtd's peer, a console proxy) that lets the provider
	// judge client certificates: chain, validity, usage and revocation,
	// on resumed sessions too.
	cfg := &tls.Config{
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: provider.VerifyClientConnection(verifier, nil),
		MinVersion:       tls.VersionTLS12,
	}
	_ = cfg
}

func ExampleVerifyServerConnection() {
	// A client dialling a host by address: crypto/tls sends no SNI for
	// an IP literal, so the hook is told the address it must check.
	addr := "192.0.2.10"
	cfg := &tls.Config{
		ServerName: addr,
		// RootCAs: the CA bundle (provider.CABundle).
		VerifyConnection: provider.VerifyServerConnection(verifier, addr, &provider.VerifyConnectionOptions{
			Timeout: 2 * time.Second, // the provider may ask a remote CA
		}),
		MinVersion: tls.VersionTLS12,
	}
	_ = cfg
}

func ExampleCheckCSR() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, names := range [][]string{{"kvm1.example.org"}, {"kvm1.example.org", "10.0.0.9"}} {
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:  pkix.Name{CommonName: names[0]},
			DNSNames: names,
		}, key)
		csr, err := provider.CheckCSR(der, nil) // the strict default policy
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println("accepted", csr.DNSNames)
	}
	// Output:
	// accepted [kvm1.example.org]
	// provider: invalid request: csr dns: DNS name "10.0.0.9" is an IP address: request it as an IP address
}

func ExampleIssueResult_TLSCertificate() {
	// A result as a provider with an intermediate CA returns it.
	res := exampleResult()

	// A TLS server identity: leaf and intermediate, without the root.
	cert, err := res.TLSCertificate()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("TLS chain:", len(cert.Certificate), "certificates")

	// The same as files, as libvirt's servercert.pem and serverkey.pem
	// hold them (write the key with mode 0600).
	chainPEM, _ := res.ChainPEM()
	keyPEM, _ := res.KeyPEM()
	_, err = tls.X509KeyPair(chainPEM, keyPEM)
	fmt.Println("files load:", err == nil)
	// Output:
	// TLS chain: 2 certificates
	// files load: true
}

// exampleResult mints a root, an intermediate and a leaf with a generated
// key.
func exampleResult() *provider.IssueResult {
	mint := func(tmpl, parent *x509.Certificate, pub any, signer any) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			return nil // TLSCertificate then reports a missing certificate
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	now := time.Now()
	ca := func(cn string, serial int64) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	}
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root := mint(ca("root", 1), ca("root", 1), rootKey.Public(), rootKey)
	inter := mint(ca("intermediate", 2), root, interKey.Public(), rootKey)
	leaf := mint(&x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "kvm1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("192.0.2.10")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, inter, leafKey.Public(), interKey)
	return &provider.IssueResult{Certificate: leaf, Chain: []*x509.Certificate{inter, root}, PrivateKey: leafKey}
}
