package ca_test

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// newManager is the platform's wiring: a registry with the built-in CA,
// and a Manager around it.
func newManager(ctx context.Context) (*ca.Manager, crypto.Signer, error) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // in practice an HSM or KMS key
	store := rootca.NewMemStore()                             // in practice rootca/sqlstore
	opts := rootca.Options{Signer: key}
	first, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: opts})
	if err != nil {
		return nil, nil, err
	}
	first.Close()
	reg := &provider.Registry{}
	if err := reg.Register("root", "kvmpki built-in CA", rootca.Factory(store, &opts)); err != nil {
		return nil, nil, err
	}
	m, err := ca.New(ctx, reg, &ca.Settings{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	return m, key, err
}

// The platform issues an agent's certificate from its CSR, with the names
// it knows the host by, and revokes it later.
func Example() {
	ctx := context.Background()
	m, _, err := newManager(ctx)
	if err != nil {
		panic(err)
	}
	defer m.Close()
	res, err := m.Issue(ctx, &ca.IssueRequest{
		DNSNames:    []string{"kvm1.example.org", "10.0.0.5"}, // CloudStack lists the private IP among the domains
		IPAddresses: []net.IP{net.ParseIP("10.0.0.5")},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Certificate.DNSNames, res.Certificate.IPAddresses, provider.RoleOf(res.Certificate))
	_, err = m.Issue(ctx, &ca.IssueRequest{DNSNames: []string{"cloudstack.internal"}})
	fmt.Println("marker refused:", err != nil)
	err = m.Revoke(ctx, &ca.RevokeRequest{Serial: "00:00:0a:bc"})
	fmt.Println("unknown serial:", err != nil)
	// Output:
	// [kvm1.example.org] [10.0.0.5] host
	// marker refused: true
	// unknown serial: true
}

// The management server's agent port: its own certificate, strict client
// verification, and the connected agents tracked.
func ExampleManager_NewAgentListener() {
	ctx := context.Background()
	m, _, err := newManager(ctx)
	if err != nil {
		panic(err)
	}
	id, err := m.NewIdentity(ctx, &ca.IdentityOptions{
		Hostname:  "ms1.example.org",
		Addresses: []net.IP{net.ParseIP("10.1.0.2"), net.ParseIP("fe80::1")},
	})
	if err != nil {
		panic(err)
	}
	go id.Run(ctx) // renews it in place
	inner, err := net.Listen("tcp", ":8250")
	if err != nil {
		panic(err)
	}
	ln, err := m.NewAgentListener(inner, &ca.AgentServerConfig{
		Identity:  id,
		OnRefusal: func(r ca.Refusal) { fmt.Println("refused", r.RemoteAddr, r.Err) },
	})
	if err != nil {
		panic(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			line, _ := bufio.NewReader(c).ReadString('\n')
			if line == "ping\n" {
				c.Write([]byte("pong\n"))
			}
		}()
	}
}

// The agent port's tls.Config alone, for a server that runs its own
// listener (without the tracking of NewAgentListener).
func ExampleManager_AgentServerTLSConfig() {
	ctx := context.Background()
	m, _, err := newManager(ctx)
	if err != nil {
		panic(err)
	}
	id, err := m.NewIdentity(ctx, &ca.IdentityOptions{Hostname: "ms1.example.org"})
	if err != nil {
		panic(err)
	}
	cfg, err := m.AgentServerTLSConfig(&ca.AgentServerConfig{
		Identity:        id,
		RequireSourceIP: true, // CloudStack's ownership check; breaks NAT
	})
	if err != nil {
		panic(err)
	}
	ln, err := tls.Listen("tcp", ":8250", cfg)
	if err != nil {
		panic(err)
	}
	defer ln.Close()
}

// An agent dials the management servers of its host= list with the files
// keystore-cert-import wrote; renewed files are used at the next
// handshake.
func ExampleAgentCredentials_TLSConfig() {
	creds, err := ca.LoadAgentCredentials(ca.AgentCredentialFiles{
		CertFile: "/etc/cloudstack/agent/cloud.crt",
		KeyFile:  "/etc/cloudstack/agent/cloud.key",
		CAFile:   "/etc/cloudstack/agent/cloud.ca.crt",
	})
	if err != nil {
		fmt.Println(err) // never a trust-all fallback
		return
	}
	d := &ca.Dialer{Credentials: creds}
	conn, err := d.DialContext(context.Background(), "ms1.example.org,ms2.example.org")
	if err != nil {
		fmt.Println(err) // every attempt's error
		return
	}
	defer conn.Close()
	// Or, for one server, the tls.Config itself:
	cfg, _ := creds.TLSConfig("ms1.example.org")
	_ = cfg
}

// Management servers peer over the cluster port; only certificates with
// the management marker name are accepted on either side.
func ExampleManager_PeerServerTLSConfig() {
	ctx := context.Background()
	m, _, err := newManager(ctx)
	if err != nil {
		panic(err)
	}
	id, err := m.NewIdentity(ctx, &ca.IdentityOptions{Hostname: "ms1.example.org"})
	if err != nil {
		panic(err)
	}
	server, err := m.PeerServerTLSConfig(id)
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Addr: ":9090", TLSConfig: server}
	_ = srv.ListenAndServeTLS("", "")
}

// A management server dials another's cluster port.
func ExampleManager_PeerClientTLSConfig() {
	ctx := context.Background()
	m, _, err := newManager(ctx)
	if err != nil {
		panic(err)
	}
	id, err := m.NewIdentity(ctx, &ca.IdentityOptions{Hostname: "ms1.example.org"})
	if err != nil {
		panic(err)
	}
	client, err := m.PeerClientTLSConfig(id, "ms2.example.org")
	if err != nil {
		panic(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: client}}
	_, _ = c.Get("https://ms2.example.org:9090/")
}

// The CA bundle, CRL and OCSP over HTTP.
func ExampleManager_CRLHandler() {
	ctx := context.Background()
	m, caKey, err := newManager(ctx) // caKey: the CA key the platform holds (rootca.Options.Signer)
	if err != nil {
		panic(err)
	}
	cas, _ := m.CACertificates(ctx)
	ocspHandler, err := m.OCSPHandler(&ca.OCSPResponder{Certificate: cas[0], Signer: caKey})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ca.pem", m.CABundleHandler())
	mux.Handle("/crl", m.CRLHandler())
	mux.Handle("/ocsp", ocspHandler)
	mux.Handle("/ocsp/", ocspHandler)
	_ = http.ListenAndServe(":8080", mux)
}
