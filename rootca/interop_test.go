package rootca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// The interop tests run every certificate profile this CA issues through
// the software that consumes it (see package internal/peers): Go
// crypto/tls with CA.VerifyPeer, `openssl verify`, GnuTLS `certtool
// --verify`, a TLS libvirtd with virsh, QEMU's VNC server with
// tls-creds-x509, and Java's JSSE. zlint_test.go lints the same
// certificates and CRLs.
//
// The matrix: three CA setups (an ECDSA P-256 root, an RSA-3072 root, and
// an ECDSA P-256 intermediate under an offline ECDSA P-384 root) × six leaf
// keys (RSA 2048/3072/4096 and ECDSA P-256/P-384 from CSRs, plus an
// RSA-2048 key the CA generates) × three roles (host, server, client).
//   - Go, OpenSSL and GnuTLS see every leaf of every setup, in each role
//     it has and, refusing it, in the role it lacks.
//   - libvirtd and QEMU are started with every host and server-only leaf
//     of the root setups, and an RSA-2048 and a P-384 one of the
//     intermediate; the host and client-only leaves of the same key
//     connect to them (see daemonDials).
//   - Java, whose every check starts a JVM, sees every leaf key in both
//     TLS roles under the ECDSA root, and one RSA and one ECDSA leaf of
//     the other setups.
//   - Every peer that reads CRLs gets each setup's CRL (TestInteropCRL).
//
// The matrix shares keys and CAs, made once (getInteropFixture): under
// the race detector an RSA-4096 key alone can take seconds.
//
// With KVMPKI_INTEROP=require, as in CI, a missing peer binary fails the
// test instead of skipping it.

const interopDNSName = "localhost"

var interopIP = net.IPv4(127, 0, 0, 1).To4()

// interopHosts are the names peers dial: every server certificate carries
// both as SANs.
var interopHosts = []string{interopDNSName, interopIP.String()}

// leafKinds are the leaf keys of the matrix. A "generated" leaf has a key
// the CA makes itself (IssueRequest without a CSR, the default RSA-2048),
// as CloudStack does for system VMs.
var leafKinds = []string{"rsa2048", "rsa3072", "rsa4096", "p256", "p384", "generated"}

var leafRoles = []provider.Role{provider.RoleHost, provider.RoleServer, provider.RoleClient}

// interopLeaf is one issued leaf with its key.
type interopLeaf struct {
	kind string
	role provider.Role
	cert *x509.Certificate
	key  crypto.Signer
	// pki trusts the setup's root and holds the leaf, its intermediates
	// and its key.
	pki peers.PKI
	tls tls.Certificate
}

func (l *interopLeaf) name() string { return l.kind + "/" + l.role.String() }

// canServe reports whether the leaf's role allows TLS server use.
func (l *interopLeaf) canServe() bool { return l.role != provider.RoleClient }

// canAuthenticate reports whether the leaf's role allows TLS client use.
func (l *interopLeaf) canAuthenticate() bool { return l.role != provider.RoleServer }

// interopSetup is one CA with a leaf of every kind and role.
type interopSetup struct {
	name  string
	ca    *rootca.CA
	caKey crypto.Signer // the issuing CA's key
	root  *x509.Certificate
	inter *x509.Certificate // nil when the CA is a root
	// rootPEM is the trust anchor. bundle is the CA bundle (issuing CA
	// first, then the root) as provider.CABundle returns it: the CA file
	// of libvirtd, virsh and QEMU, which check their own certificate
	// against it alone (see TestInteropIntermediateCAFile).
	rootPEM, bundle []byte
	roots           *x509.CertPool
	leaves          []*interopLeaf
	byName          map[string]*interopLeaf

	// revoked is a host leaf revoked for keyCompromise, listed in crl
	// together with a leaf revoked without a reason.
	revoked *interopLeaf
	crl     *x509.RevocationList
	// rootCRL is, for the intermediate setup, an empty CRL of the offline
	// root (PEM): Java checks the revocation of every certificate below
	// the trust anchor, the intermediate included.
	rootCRL []byte
}

func (s *interopSetup) leaf(kind string, role provider.Role) *interopLeaf {
	l := s.byName[kind+"/"+role.String()]
	if l == nil {
		panic("no leaf " + kind + "/" + role.String() + " in setup " + s.name)
	}
	return l
}

// interopFixture is the PKI shared by the interop and zlint tests.
type interopFixture struct {
	setups []*interopSetup
	// foreign is a host leaf of an unrelated CA, whose root is
	// foreign.pki.CACert.
	foreign *interopLeaf
}

// getInteropFixture mints the shared PKI once per test binary: RSA-4096
// key generation alone takes seconds under the race detector.
func getInteropFixture(t testing.TB) *interopFixture {
	t.Helper()
	f, err := interopFixtureOnce()
	require.NoError(t, err, "minting the interop PKI")
	return f
}

var interopFixtureOnce = sync.OnceValues(func() (*interopFixture, error) {
	ctx := context.Background()
	keys, err := interopKeys()
	if err != nil {
		return nil, err
	}
	f := &interopFixture{}

	// The CA keys are held outside the store (Options.Signer): a key
	// encrypted under a password costs two PBKDF2 runs of 600,000
	// iterations per Open, seconds under the race detector, and makes no
	// difference to the certificates.
	ecdsaRootKey := newECDSAKey(elliptic.P256())
	ecdsaRoot, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: ecdsaRootKey}})
	if err != nil {
		return nil, err
	}
	rsaRoot, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{
		Options: rootca.Options{Signer: keys["ca-rsa3072"]},
		Subject: pkix.Name{Organization: []string{"kvmpki"}, CommonName: "kvmpki RSA root CA"},
	})
	if err != nil {
		return nil, err
	}
	offlineKey := newECDSAKey(elliptic.P384())
	offline, _, err := rootca.NewRoot(&rootca.CreateOptions{
		Options: rootca.Options{Signer: offlineKey},
		Subject: pkix.Name{Organization: []string{"kvmpki"}, CommonName: "kvmpki offline root CA"},
	})
	if err != nil {
		return nil, err
	}
	interKey := newECDSAKey(elliptic.P256())
	inter, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{
		Options: rootca.Options{Signer: interKey},
		Parent:  &rootca.Issuer{Certificate: offline, Signer: offlineKey},
	})
	if err != nil {
		return nil, err
	}

	for _, c := range []struct {
		name string
		ca   *rootca.CA
		key  crypto.Signer
	}{{"ecdsa-root", ecdsaRoot, ecdsaRootKey}, {"rsa-root", rsaRoot, keys["ca-rsa3072"]}, {"intermediate", inter, interKey}} {
		s, err := newInteropSetup(ctx, c.name, c.ca, c.key, keys)
		if err != nil {
			return nil, fmt.Errorf("setup %s: %w", c.name, err)
		}
		f.setups = append(f.setups, s)
	}
	// rootca signs CRLs for the CA it runs; the offline root's CRL is the
	// root operator's business, made here as the standard library makes
	// it.
	now := time.Now()
	rootCRL, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour),
	}, offline, offlineKey)
	if err != nil {
		return nil, err
	}
	f.setups[2].rootCRL = rootca.EncodeCRL(rootCRL)

	foreignKey := newECDSAKey(elliptic.P256())
	foreignCA, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{
		Options: rootca.Options{Signer: foreignKey},
		Subject: pkix.Name{Organization: []string{"elsewhere"}, CommonName: "foreign root CA"},
	})
	if err != nil {
		return nil, err
	}
	foreign, err := newInteropSetup(ctx, "foreign", foreignCA, foreignKey, nil)
	if err != nil {
		return nil, err
	}
	if f.foreign, err = foreign.issue(ctx, "p256", provider.RoleHost, newECDSAKey(elliptic.P256())); err != nil {
		return nil, err
	}
	return f, nil
})

// interopKeys generates the RSA keys of the matrix, concurrently: under
// the race detector RSA-4096 takes from 0.2 to over 4 seconds. Leaves of
// the same kind share a key across roles and setups; CA keys are their
// own.
var interopKeys = sync.OnceValues(func() (map[string]crypto.Signer, error) {
	sizes := map[string]int{"rsa2048": 2048, "rsa3072": 3072, "rsa4096": 4096, "ca-rsa3072": 3072}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	keys := map[string]crypto.Signer{}
	for name, bits := range sizes {
		wg.Go(func() {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			mu.Lock()
			defer mu.Unlock()
			keys[name] = k
			errs = append(errs, err)
		})
	}
	wg.Wait()
	keys["p256"] = newECDSAKey(elliptic.P256())
	keys["p384"] = newECDSAKey(elliptic.P384())
	return keys, errors.Join(errs...)
})

// newECDSAKey generates an ECDSA key, which cannot fail with
// crypto/rand.
func newECDSAKey(c elliptic.Curve) crypto.Signer {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// newInteropSetup issues every leaf of the matrix from ca, whose key is
// caKey, and a host leaf it revokes for keyCompromise, then signs a CRL.
// With keys nil it issues nothing.
func newInteropSetup(ctx context.Context, name string, ca *rootca.CA, caKey crypto.Signer, keys map[string]crypto.Signer) (*interopSetup, error) {
	chain, err := ca.CACertificates(ctx)
	if err != nil {
		return nil, err
	}
	s := &interopSetup{
		name:    name,
		ca:      ca,
		caKey:   caKey,
		root:    chain[len(chain)-1],
		rootPEM: provider.EncodeCertificates(chain[len(chain)-1]),
		roots:   x509.NewCertPool(),
		byName:  map[string]*interopLeaf{},
	}
	if len(chain) > 1 {
		s.inter = chain[0]
	}
	s.roots.AddCert(s.root)
	if s.bundle, err = provider.CABundle(ctx, ca); err != nil {
		return nil, err
	}
	if keys == nil {
		return s, nil
	}
	for _, kind := range leafKinds {
		for _, role := range leafRoles {
			l, err := s.issue(ctx, kind, role, keys[kind])
			if err != nil {
				return nil, fmt.Errorf("%s/%s: %w", kind, role, err)
			}
			s.leaves = append(s.leaves, l)
			s.byName[l.name()] = l
		}
	}

	revokedKey := newECDSAKey(elliptic.P256())
	if s.revoked, err = s.issue(ctx, "revoked", provider.RoleHost, revokedKey); err != nil {
		return nil, err
	}
	if err := ca.Revoke(ctx, &provider.RevokeRequest{Serial: s.revoked.cert.SerialNumber, Reason: provider.ReasonKeyCompromise}); err != nil {
		return nil, err
	}
	// A second entry, without a reason code as RFC 5280 recommends for
	// "unspecified".
	other, err := s.issue(ctx, "unspecified", provider.RoleClient, revokedKey)
	if err != nil {
		return nil, err
	}
	if err := ca.Revoke(ctx, &provider.RevokeRequest{Serial: other.cert.SerialNumber}); err != nil {
		return nil, err
	}
	if s.crl, err = ca.SignCRL(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// issue issues a leaf for key: from a CSR that names the CN and
// DNS:localhost, which the request vouches for, with IP:127.0.0.1 added by
// the request, or, for kind "generated", for a key the CA generates.
func (s *interopSetup) issue(ctx context.Context, kind string, role provider.Role, key crypto.Signer) (*interopLeaf, error) {
	cn := fmt.Sprintf("%s-%s.%s.kvmpki.test", kind, role, s.name)
	// The platform vouches for every name: rootca leaves out CSR names
	// the request does not list.
	req := &provider.IssueRequest{Role: role, IPAddresses: []net.IP{interopIP}, CommonName: cn, DNSNames: []string{interopDNSName}}
	if kind != "generated" {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:  pkix.Name{CommonName: cn},
			DNSNames: []string{interopDNSName},
		}, key)
		if err != nil {
			return nil, err
		}
		req.CSR = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	res, err := s.ca.Issue(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.PrivateKey != nil {
		key = res.PrivateKey
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	l := &interopLeaf{kind: kind, role: role, cert: res.Certificate, key: key}
	// The certificate file holds the leaf, then every CA certificate
	// but the root.
	l.pki = peers.PKI{
		CACert: s.rootPEM,
		Cert:   provider.EncodeCertificates(append([]*x509.Certificate{res.Certificate}, res.Chain[:len(res.Chain)-1]...)...),
		Key:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
	}
	l.tls = tls.Certificate{Certificate: [][]byte{res.Certificate.Raw}, PrivateKey: key, Leaf: res.Certificate}
	for _, c := range res.Chain[:len(res.Chain)-1] {
		l.tls.Certificate = append(l.tls.Certificate, c.Raw)
	}
	return l, nil
}

// withCA returns p trusting caCert instead.
func withCA(p peers.PKI, caCert []byte) peers.PKI {
	p.CACert = caCert
	return p
}

// withCRL returns p with crl loaded.
func withCRL(p peers.PKI, crl []byte) peers.PKI {
	p.CRL = crl
	return p
}

// TestInterop checks that each leaf profile works with every peer, for its
// role, and that a role a leaf lacks is refused where the peer checks it.
func TestInterop(t *testing.T) {
	f := getInteropFixture(t)
	for _, s := range f.setups {
		t.Run(s.name, func(t *testing.T) {
			t.Run("go", func(t *testing.T) { t.Parallel(); testGoTLS(t, s, f.foreign) })
			t.Run("openssl", func(t *testing.T) { t.Parallel(); testVerifiers(t, s, f.foreign, opensslVerifier) })
			t.Run("certtool", func(t *testing.T) { t.Parallel(); testVerifiers(t, s, f.foreign, certtoolVerifier) })
			t.Run("libvirtd", func(t *testing.T) { t.Parallel(); testLibvirtd(t, s, f.foreign) })
			t.Run("qemu", func(t *testing.T) { t.Parallel(); testQEMU(t, s, f.foreign) })
			t.Run("java", func(t *testing.T) { t.Parallel(); testJava(t, s) })
		})
	}
}

// goHandshake runs a TLS handshake between a Go server presenting server
// and a Go client presenting client and dialling host. Both judge the
// peer through ca as the provider package prescribes: the server with
// provider.VerifyClientConnection (ClientAuth RequireAnyClientCert, no
// ClientCAs), the client with RootCAs plus
// provider.VerifyServerConnection. It returns each side's error; nil and
// nil mean both accepted the other and exchanged a byte.
func goHandshake(t *testing.T, ca *rootca.CA, roots *x509.CertPool, server, client tls.Certificate, host string) (serverErr, clientErr error) {
	t.Helper()
	// TCP rather than net.Pipe: a side that refuses writes its alert
	// while the other may still be writing its flight, which an
	// unbuffered pipe turns into a deadlock.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	deadline := time.Now().Add(30 * time.Second)
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(deadline)
		srv := tls.Server(conn, &tls.Config{
			Certificates:     []tls.Certificate{server},
			ClientAuth:       tls.RequireAnyClientCert,
			VerifyConnection: provider.VerifyClientConnection(ca, nil),
		})
		err = srv.Handshake()
		if err == nil {
			_, err = srv.Write([]byte("K"))
		}
		done <- err
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(deadline))
	cli := tls.Client(conn, &tls.Config{
		RootCAs:    roots,
		ServerName: host,
		// Always present the certificate, as a real client configured
		// with it would.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &client, nil },
		VerifyConnection:     provider.VerifyServerConnection(ca, host, nil),
	})
	clientErr = cli.Handshake()
	if clientErr == nil {
		// In TLS 1.3 the client finishes before the server has judged
		// its certificate: the verdict is the byte or the alert.
		var b [1]byte
		_, clientErr = io.ReadFull(cli, b[:])
	}
	conn.Close() // unblocks the server if the client gave up first
	return <-done, clientErr
}

func testGoTLS(t *testing.T, s *interopSetup, foreign *interopLeaf) {
	host := s.leaf("p256", provider.RoleHost)
	for _, l := range s.leaves {
		t.Run(l.name(), func(t *testing.T) {
			if l.canServe() {
				for _, name := range interopHosts {
					t.Run("server via "+name, func(t *testing.T) {
						serr, cerr := goHandshake(t, s.ca, s.roots, l.tls, host.tls, name)
						assert.NoError(t, serr, "server")
						assert.NoError(t, cerr, "client")
					})
				}
			} else {
				t.Run("refused as server", func(t *testing.T) {
					_, cerr := goHandshake(t, s.ca, s.roots, l.tls, host.tls, interopDNSName)
					assert.ErrorContains(t, cerr, "incompatible key usage")
					err := s.ca.VerifyPeer(t.Context(), &provider.VerifyRequest{
						Certificates: []*x509.Certificate{l.cert}, Usage: provider.UsageServerAuth, ServerName: interopDNSName})
					assert.ErrorIs(t, err, provider.ErrIncompatibleUsage)
				})
			}
			if l.canAuthenticate() {
				t.Run("client", func(t *testing.T) {
					serr, cerr := goHandshake(t, s.ca, s.roots, host.tls, l.tls, interopDNSName)
					assert.NoError(t, serr, "server")
					assert.NoError(t, cerr, "client")
				})
			} else {
				t.Run("refused as client", func(t *testing.T) {
					serr, _ := goHandshake(t, s.ca, s.roots, host.tls, l.tls, interopDNSName)
					assert.ErrorIs(t, serr, provider.ErrIncompatibleUsage)
				})
			}
		})
	}
	t.Run("foreign CA", func(t *testing.T) {
		serr, _ := goHandshake(t, s.ca, s.roots, host.tls, foreign.tls, interopDNSName)
		assert.ErrorIs(t, serr, provider.ErrUnknownAuthority, "foreign client")
		_, cerr := goHandshake(t, s.ca, s.roots, foreign.tls, host.tls, interopDNSName)
		assert.ErrorContains(t, cerr, "certificate signed by unknown authority", "foreign server")
	})
	t.Run("revoked", func(t *testing.T) {
		serr, _ := goHandshake(t, s.ca, s.roots, host.tls, s.revoked.tls, interopDNSName)
		assert.ErrorIs(t, serr, provider.ErrRevoked, "revoked client")
		_, cerr := goHandshake(t, s.ca, s.roots, s.revoked.tls, host.tls, interopDNSName)
		assert.ErrorIs(t, cerr, provider.ErrRevoked, "revoked server")
	})
}

// verifier is `openssl verify` or `certtool --verify` with the messages it
// refuses with.
type verifier struct {
	verify func(testing.TB, peers.PKI, peers.VerifyOptions) error
	// wrongPurpose and unknownCA are substrings of the refusals.
	wrongPurpose, unknownCA, revoked string
}

var (
	opensslVerifier = verifier{
		verify:       peers.OpenSSLVerify,
		wrongPurpose: "unsuitable certificate purpose",
		unknownCA:    "unable to get local issuer certificate",
		revoked:      "certificate revoked",
	}
	certtoolVerifier = verifier{
		verify:       peers.CerttoolVerify,
		wrongPurpose: "does not match the intended purpose",
		unknownCA:    "The certificate issuer is unknown",
		revoked:      "The certificate chain is revoked",
	}
)

// testVerifiers verifies every leaf for each TLS purpose, with OpenSSL's
// -x509_strict, and for each name a server is dialled by.
func testVerifiers(t *testing.T, s *interopSetup, foreign *interopLeaf, v verifier) {
	strict := func(p peers.Purpose, host string) peers.VerifyOptions {
		return peers.VerifyOptions{Purpose: p, Hostname: host, Strict: true}
	}
	t.Run("CA", func(t *testing.T) {
		// The root verifies as itself; an intermediate under the root.
		p := peers.PKI{CACert: s.rootPEM, Cert: s.bundle}
		assert.NoError(t, v.verify(t, p, strict(peers.PurposeAny, "")))
	})
	for _, l := range s.leaves {
		t.Run(l.name(), func(t *testing.T) {
			if l.canServe() {
				for _, name := range interopHosts {
					assert.NoError(t, v.verify(t, l.pki, strict(peers.PurposeServer, name)), "server via %s", name)
				}
			} else {
				assert.ErrorContains(t, v.verify(t, l.pki, strict(peers.PurposeServer, "")), v.wrongPurpose, "server")
			}
			if l.canAuthenticate() {
				assert.NoError(t, v.verify(t, l.pki, strict(peers.PurposeClient, "")), "client")
			} else {
				assert.ErrorContains(t, v.verify(t, l.pki, strict(peers.PurposeClient, "")), v.wrongPurpose, "client")
			}
		})
	}
	t.Run("foreign CA", func(t *testing.T) {
		err := v.verify(t, withCA(foreign.pki, s.rootPEM), strict(peers.PurposeClient, ""))
		assert.ErrorContains(t, err, v.unknownCA)
	})
}

// daemonKinds returns the leaf kinds the daemons (libvirtd, QEMU) are
// started with: every kind under a root CA; under the intermediate, whose
// chain is what it adds, one RSA and one ECDSA kind.
func daemonKinds(s *interopSetup) []string {
	if s.inter != nil {
		return []string{"rsa2048", "p384"}
	}
	return leafKinds
}

// daemonDial is one client connection to a daemon.
type daemonDial struct {
	client *interopLeaf
	host   string
}

// daemonDials returns the connections made to a daemon serving a leaf of
// kind: with the host leaf by name and by IP address, which the server
// certificate must both match, and with the client-only leaf.
func daemonDials(s *interopSetup, kind string) []daemonDial {
	host, client := s.leaf(kind, provider.RoleHost), s.leaf(kind, provider.RoleClient)
	return []daemonDial{{host, interopDNSName}, {host, interopIP.String()}, {client, interopDNSName}}
}

// testLibvirtd starts a libvirtd with each server-capable leaf of
// daemonKinds and connects virsh as daemonDials says. libvirtd starting
// with an ECDSA leaf, and accepting one from virsh, is the proof that the
// profile avoids libvirt 9.0's keyEncipherment trap.
func testLibvirtd(t *testing.T, s *interopSetup, foreign *interopLeaf) {
	peers.Require(t, "libvirtd", "virsh")
	kinds := daemonKinds(s)
	for _, kind := range kinds {
		for _, role := range []provider.Role{provider.RoleHost, provider.RoleServer} {
			server := s.leaf(kind, role)
			t.Run(server.name(), func(t *testing.T) {
				t.Parallel()
				d, err := peers.StartLibvirtd(t, withCA(server.pki, s.bundle), peers.LibvirtdOptions{})
				require.NoError(t, err, "libvirtd refused its certificate")
				for _, c := range daemonDials(s, kind) {
					assert.NoError(t, d.Connect(t, withCA(c.client.pki, s.bundle), c.host), "virsh with %s via %s", c.client.name(), c.host)
				}
				if kind == kinds[0] && role == provider.RoleHost {
					// virsh trusts both CAs, or its own check refuses the
					// certificate before connecting.
					c := withCA(foreign.pki, append(bytes.Clone(s.bundle), foreign.pki.CACert...))
					assert.ErrorContains(t, d.Connect(t, c, interopDNSName), "Failed to verify peer's certificate", "foreign CA client")
				}
			})
		}
	}
}

// testQEMU starts a QEMU VNC-TLS server with each server-capable leaf of
// daemonKinds and probes it as daemonDials says.
func testQEMU(t *testing.T, s *interopSetup, foreign *interopLeaf) {
	peers.Require(t, "qemu-system-x86_64")
	kinds := daemonKinds(s)
	for _, kind := range kinds {
		for _, role := range []provider.Role{provider.RoleHost, provider.RoleServer} {
			server := s.leaf(kind, role)
			t.Run(server.name(), func(t *testing.T) {
				t.Parallel()
				q, err := peers.StartQEMUVNC(t, withCA(server.pki, s.bundle), peers.QEMUVNCOptions{})
				require.NoError(t, err, "QEMU refused its certificate")
				for _, c := range daemonDials(s, kind) {
					cfg, err := c.client.pki.ClientTLSConfig(c.host)
					require.NoError(t, err)
					assert.NoError(t, q.Probe(t, cfg), "probe with %s via %s", c.client.name(), c.host)
				}
				if kind == kinds[0] && role == provider.RoleHost {
					cfg, err := withCA(foreign.pki, s.rootPEM).ClientTLSConfig(interopDNSName)
					require.NoError(t, err)
					assert.ErrorContains(t, q.Probe(t, cfg), "The certificate hasn't got a known issuer", "foreign CA client")
				}
			})
		}
	}
}

// javaCase is one Java handshake: Java as TLS client of a Go server
// presenting leaf, or as TLS server requiring leaf from a Go client.
type javaCase struct {
	kind    string
	role    provider.Role
	server  bool   // Java is the server
	host    string // the name Java dials, as client
	wantErr string // "" = accepted
}

// javaCases returns the Java handshakes of a setup. Each costs a JVM, so
// the ECDSA root covers every leaf key in both directions, alternating
// the roles, plus the refusal of a missing role; the other setups cover
// one RSA and one ECDSA leaf.
func javaCases(setup string) []javaCase {
	if setup != "ecdsa-root" {
		return []javaCase{
			{kind: "p384", role: provider.RoleHost, host: interopIP.String()},
			{kind: "rsa2048", role: provider.RoleClient, server: true},
		}
	}
	var cases []javaCase
	for i, kind := range leafKinds {
		serverRole, clientRole := provider.RoleHost, provider.RoleClient
		if i%2 == 1 {
			serverRole, clientRole = provider.RoleServer, provider.RoleHost
		}
		cases = append(cases,
			javaCase{kind: kind, role: serverRole, host: interopHosts[i%2]},
			javaCase{kind: kind, role: clientRole, server: true})
	}
	return append(cases,
		javaCase{kind: "rsa2048", role: provider.RoleClient, host: interopDNSName,
			wantErr: "Extended key usage does not permit use for TLS server authentication"},
		javaCase{kind: "p256", role: provider.RoleServer, server: true,
			wantErr: "Extended key usage does not permit use for TLS client authentication"})
}

func testJava(t *testing.T, s *interopSetup) {
	peers.Require(t, "java")
	// Java's own identity as a server; the Go client does not check it.
	javaID := s.leaf("p256", provider.RoleHost).pki
	for _, c := range javaCases(s.name) {
		l := s.leaf(c.kind, c.role)
		verdict := "accepts "
		if c.wantErr != "" {
			verdict = "refuses "
		}
		check := func(t *testing.T, err error) {
			if c.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, c.wantErr)
			}
		}
		if c.server {
			t.Run("server "+verdict+l.name(), func(t *testing.T) {
				t.Parallel()
				check(t, peers.JavaServer(t, javaID, l.pki))
			})
		} else {
			t.Run("client "+verdict+l.name()+" via "+c.host, func(t *testing.T) {
				t.Parallel()
				check(t, peers.JavaClient(t, peers.PKI{CACert: s.rootPEM}, l.pki, c.host))
			})
		}
	}
}

// TestInteropCRL checks each setup's CRL, PEM and DER, with every peer
// that reads CRLs: the revoked host leaf is refused, an unrevoked one
// accepted.
func TestInteropCRL(t *testing.T) {
	f := getInteropFixture(t)
	for _, s := range f.setups {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			der := s.crl.Raw
			pemCRL := rootca.EncodeCRL(der)
			good, revoked := s.leaf("p256", provider.RoleHost), s.revoked
			crls := []struct {
				name string
				data []byte
			}{{"PEM", pemCRL}, {"DER", der}}

			t.Run("go", func(t *testing.T) {
				parsed, err := x509.ParseRevocationList(der)
				require.NoError(t, err)
				issuer := s.root
				if s.inter != nil {
					issuer = s.inter
				}
				assert.NoError(t, parsed.CheckSignatureFrom(issuer))
				assert.Zero(t, s.crl.Number.Cmp(parsed.Number), "CRL number")
				assert.True(t, parsed.NextUpdate.After(parsed.ThisUpdate))
				reasons := map[string]int{}
				for _, e := range parsed.RevokedCertificateEntries {
					reasons[e.SerialNumber.String()] = e.ReasonCode
				}
				assert.Len(t, reasons, 2)
				assert.Equal(t, int(provider.ReasonKeyCompromise), reasons[revoked.cert.SerialNumber.String()])
				assert.NotContains(t, reasons, good.cert.SerialNumber.String())
			})
			t.Run("openssl crl -verify", func(t *testing.T) {
				for _, c := range crls {
					// The CRL's issuer must be among the certificates
					// given: the bundle holds the intermediate.
					assert.NoError(t, peers.OpenSSLVerifyCRL(t, s.bundle, c.data), c.name)
				}
				other := f.setups[(slices.Index(f.setups, s)+1)%len(f.setups)]
				assert.Error(t, peers.OpenSSLVerifyCRL(t, other.bundle, der), "CRL checked against another CA")
			})
			t.Run("openssl crl -inform DER", func(t *testing.T) {
				peers.Require(t, "openssl")
				// OpenSSLVerifyCRL hands OpenSSL PEM; read the DER
				// file itself too, and OpenSSL's view of the fields.
				dir := t.TempDir()
				require.NoError(t, os.WriteFile(filepath.Join(dir, "crl.der"), der, 0o644))
				require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.pem"), s.bundle, 0o644))
				out, err := exec.CommandContext(t.Context(), "openssl", "crl", "-inform", "DER", "-in", filepath.Join(dir, "crl.der"),
					"-CAfile", filepath.Join(dir, "ca.pem"), "-verify", "-noout", "-text").CombinedOutput()
				require.NoError(t, err, "%s", out)
				for _, want := range []string{
					"verify OK",
					"Version 2 (0x1)",
					"X509v3 CRL Number:",
					"X509v3 Authority Key Identifier:",
					"Next Update:",
					"Key Compromise",
				} {
					assert.Contains(t, string(out), want)
				}
			})
			for _, v := range []struct {
				name string
				v    verifier
			}{{"openssl verify -crl_check", opensslVerifier}, {"certtool --load-crl", certtoolVerifier}} {
				t.Run(v.name, func(t *testing.T) {
					for _, c := range crls {
						opts := peers.VerifyOptions{Purpose: peers.PurposeClient, Strict: true}
						assert.NoError(t, v.v.verify(t, withCRL(good.pki, c.data), opts), "unrevoked, %s CRL", c.name)
						assert.ErrorContains(t, v.v.verify(t, withCRL(revoked.pki, c.data), opts), v.v.revoked, "revoked, %s CRL", c.name)
					}
				})
			}
			t.Run("libvirtd crl_file", func(t *testing.T) {
				d, err := peers.StartLibvirtd(t, withCRL(withCA(good.pki, s.bundle), pemCRL), peers.LibvirtdOptions{})
				require.NoError(t, err)
				assert.NoError(t, d.Connect(t, withCA(good.pki, s.bundle), interopDNSName), "unrevoked client")
				assert.ErrorContains(t, d.Connect(t, withCA(revoked.pki, s.bundle), interopDNSName), "revoked", "revoked client")
			})
			t.Run("qemu ca-crl.pem", func(t *testing.T) {
				q, err := peers.StartQEMUVNC(t, withCRL(withCA(good.pki, s.bundle), der), peers.QEMUVNCOptions{})
				require.NoError(t, err)
				cfg, err := good.pki.ClientTLSConfig("")
				require.NoError(t, err)
				assert.NoError(t, q.Probe(t, cfg), "unrevoked client")
				cfg, err = revoked.pki.ClientTLSConfig("")
				require.NoError(t, err)
				assert.ErrorContains(t, q.Probe(t, cfg), "The certificate has been revoked", "revoked client")
			})
			t.Run("java", func(t *testing.T) {
				// Without the root's CRL, Java refuses every client of the
				// intermediate setup: "Could not determine revocation
				// status" (of the intermediate).
				java := withCRL(good.pki, append(bytes.Clone(pemCRL), s.rootCRL...))
				assert.ErrorContains(t, peers.JavaServer(t, java, revoked.pki), "Certificate has been revoked", "revoked client")
				assert.NoError(t, peers.JavaServer(t, java, s.leaf("rsa2048", provider.RoleClient).pki), "unrevoked client")
			})
		})
	}
}

// TestInteropIntermediateCAFile shows why libvirtd and QEMU get the CA
// bundle of an intermediate CA (provider.CABundle: intermediate, then
// root) as their CA file: both check their own certificate against the CA
// file alone at start, ignoring the intermediates that follow the leaf in
// the certificate file, and refuse to start with the root alone.
func TestInteropIntermediateCAFile(t *testing.T) {
	peers.Require(t, "libvirtd", "qemu-system-x86_64")
	f := getInteropFixture(t)
	s := f.setups[2]
	require.NotNil(t, s.inter)
	host := s.leaf("p256", provider.RoleHost)
	require.Equal(t, s.rootPEM, host.pki.CACert)

	t.Run("libvirtd", func(t *testing.T) {
		t.Parallel()
		d, err := peers.StartLibvirtd(t, host.pki, peers.LibvirtdOptions{})
		assert.Nil(t, d)
		assert.ErrorContains(t, err, "failed validation against")
	})
	t.Run("qemu", func(t *testing.T) {
		t.Parallel()
		q, err := peers.StartQEMUVNC(t, host.pki, peers.QEMUVNCOptions{})
		assert.Nil(t, q)
		assert.ErrorContains(t, err, "failed validation against")
	})
	t.Run("virsh", func(t *testing.T) {
		t.Parallel()
		d, err := peers.StartLibvirtd(t, withCA(host.pki, s.bundle), peers.LibvirtdOptions{})
		require.NoError(t, err)
		assert.ErrorContains(t, d.Connect(t, host.pki, interopDNSName), "failed validation against", "root alone")
		assert.NoError(t, d.Connect(t, withCA(host.pki, s.bundle), interopDNSName), "CA bundle")
	})
}
