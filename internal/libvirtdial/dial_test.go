package libvirtdial

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/internal/pkicore"
	"github.com/kvmpki/kvmpki/internal/revocation"
)

var serials atomic.Int64

// node is a certificate with its key and issuer chain (up to, not
// including, the root).
type node struct {
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	chain []*x509.Certificate // cert first
}

func (n *node) certPEM() []byte {
	var out []byte
	for _, c := range n.chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func (n *node) keyPEM(t testing.TB) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(n.key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func (n *node) tlsCertificate() *tls.Certificate {
	c := &tls.Certificate{PrivateKey: n.key, Leaf: n.cert}
	for _, x := range n.chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// mint issues cn from parent (a self-signed root when nil). Hosts carry
// the name cn, "localhost" and 127.0.0.1 unless dns is given.
func mint(t testing.TB, cn string, parent *node, isCA bool, dns ...string) *node {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1000 + serials.Add(1)),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"kvmpki libvirtdial test"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		BasicConstraintsValid: true, IsCA: isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		// GnuTLS (libvirtd) wants keyEncipherment even for an ECDSA key.
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		if dns == nil {
			dns = []string{cn, "localhost"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		tmpl.DNSNames = dns
	}
	signer, signerKey := tmpl, key
	var chain []*x509.Certificate
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
		if len(parent.chain) > 0 && !parent.isRoot() {
			chain = parent.chain
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &node{cert: cert, key: key, chain: append([]*x509.Certificate{cert}, chain...)}
}

func (n *node) isRoot() bool {
	return n.cert.IsCA && string(n.cert.RawIssuer) == string(n.cert.RawSubject)
}

// crl signs a CRL of n revoking certs at revokedAt.
func (n *node) crl(t testing.TB, revokedAt time.Time, certs ...*x509.Certificate) *x509.RevocationList {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range certs {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: revokedAt})
	}
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(serials.Add(1)), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, n.cert, n.key)
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	return crl
}

func pemOf(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// TestDialLibvirtd dials a real libvirtd and checks each outcome's side
// and reason. The server's certificate is issued by an intermediate CA;
// the client's directly by the root.
func TestDialLibvirtd(t *testing.T) {
	t.Parallel()
	peers.Require(t, "libvirtd")
	root := mint(t, "kvmpki dial root", nil, true)
	twin := mint(t, "kvmpki dial root", nil, true) // same name, another key
	inter := mint(t, "kvmpki dial intermediate", root, true)
	server := mint(t, "kvm1.example.org", inter, false)
	client := mint(t, "kvm2.example.org", root, false)
	outsider := mint(t, "kvm3.example.org", root, false)
	// A certificate of the twin with the server's serial number.
	twinHost := &x509.Certificate{SerialNumber: server.cert.SerialNumber}

	caPEM := pemOf(root.cert, inter.cert)
	d, err := peers.StartLibvirtd(t, peers.PKI{CACert: caPEM, Cert: server.certPEM(), Key: server.keyPEM(t)},
		peers.LibvirtdOptions{AllowedDNs: []string{"*CN=kvm2.example.org"}})
	require.NoError(t, err)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(d.Port))

	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	roots.AddCert(twin.cert)
	cas := []*x509.Certificate{root.cert, twin.cert, inter.cert}
	set := func(crls ...*x509.RevocationList) *revocation.Set {
		s, err := revocation.NewSet(crls, cas, time.Now())
		require.NoError(t, err)
		return s
	}
	past, future := time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		a := l.Addr().String()
		require.NoError(t, l.Close())
		return a
	}()

	tests := []struct {
		name   string
		opts   Options
		side   Side
		reason error
	}{
		{name: "accepted by IP address", opts: Options{}},
		{name: "accepted by name", opts: Options{ServerName: "kvm1.example.org"}},
		{name: "server name mismatch", opts: Options{ServerName: "kvm9.example.org"}, side: SideServer, reason: pkicore.ErrNameMismatch},
		{name: "IP literal not among the IP SANs", opts: Options{ServerName: "127.0.0.2"}, side: SideServer, reason: pkicore.ErrNameMismatch},
		{name: "server on its issuer's CRL", opts: Options{CRLs: set(inter.crl(t, past, server.cert))}, side: SideServer, reason: pkicore.ErrRevoked},
		// libvirttls checked the leaf only: a revoked intermediate passed.
		{name: "server's intermediate on the root's CRL", opts: Options{CRLs: set(root.crl(t, past, inter.cert))}, side: SideServer, reason: pkicore.ErrRevoked},
		// libvirttls matched the CRL by issuer name: the twin's CRL revoked it.
		{name: "same serial on a same-name CA's CRL", opts: Options{CRLs: set(twin.crl(t, past, twinHost))}},
		// libvirttls ignored the revocation time.
		{name: "revocation dated in the future", opts: Options{CRLs: set(inter.crl(t, future, server.cert))}},
		{name: "client revoked", opts: Options{CRLs: set(root.crl(t, past, client.cert))}, side: SideClient, reason: pkicore.ErrRevoked},
		{name: "client expired", opts: Options{Time: func() time.Time { return time.Now().Add(48 * time.Hour) }}, side: SideClient, reason: pkicore.ErrExpired},
		{name: "client DN not allowed", opts: Options{Certificate: outsider.tlsCertificate()}, side: SideClient, reason: ErrClientRefused},
		{name: "port closed", opts: Options{Addr: closed}, reason: ErrPortClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			if o.Addr == "" {
				o.Addr = addr
			}
			if o.Certificate == nil {
				o.Certificate = client.tlsCertificate()
			}
			o.Roots = roots
			err := Dial(t.Context(), &o)
			if tc.reason == nil {
				assert.NoError(t, err)
				return
			}
			var de *Error
			require.True(t, errors.As(err, &de), "%v", err)
			assert.Equal(t, tc.side, de.Side, "%v", err)
			assert.ErrorIs(t, err, tc.reason)
			t.Log(err)
		})
	}
}

func TestDialOptions(t *testing.T) {
	assert.Error(t, Dial(t.Context(), nil))
	assert.Error(t, Dial(t.Context(), &Options{Addr: "127.0.0.1:1"}))
}

func TestErrorMessage(t *testing.T) {
	err := &Error{Addr: "h:1", Side: SideServer, Reason: pkicore.ErrRevoked, Err: errors.Join(pkicore.ErrRevoked)}
	assert.Equal(t, "h:1: server certificate: certificate revoked", err.Error(), "the reason is not repeated")
	err = &Error{Addr: "h:1", Reason: ErrPortClosed, Err: errors.New("connect: refused")}
	assert.Equal(t, "h:1: port closed: connect: refused", err.Error())
}

// TestDialIntermediateFromCAFile: libvirtd sends its leaf only and the
// intermediate is in the CA file, as GnuTLS accepts; the dial needs the
// CA file's intermediates, and checks them against the root's CRL.
func TestDialIntermediateFromCAFile(t *testing.T) {
	t.Parallel()
	peers.Require(t, "libvirtd")
	root := mint(t, "kvmpki dial root", nil, true)
	inter := mint(t, "kvmpki dial intermediate", root, true)
	server := mint(t, "kvm1.example.org", inter, false)
	client := mint(t, "kvm2.example.org", root, false)
	d, err := peers.StartLibvirtd(t, peers.PKI{CACert: pemOf(root.cert, inter.cert), Cert: pemOf(server.cert), Key: server.keyPEM(t)},
		peers.LibvirtdOptions{})
	require.NoError(t, err)

	roots, inters := SplitCAs([]*x509.Certificate{root.cert, inter.cert})
	require.Len(t, inters, 1)
	revoked, err := revocation.NewSet([]*x509.RevocationList{root.crl(t, time.Now().Add(-time.Minute), inter.cert)},
		[]*x509.Certificate{root.cert, inter.cert}, time.Now())
	require.NoError(t, err)
	tests := []struct {
		name          string
		intermediates []*x509.Certificate
		crls          *revocation.Set
		reason        error
	}{
		{name: "with the CA file's intermediate", intermediates: inters},
		{name: "without it", reason: pkicore.ErrUnknownAuthority},
		{name: "intermediate revoked", intermediates: inters, crls: revoked, reason: pkicore.ErrRevoked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Dial(t.Context(), &Options{
				Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(d.Port)), Roots: roots, Intermediates: tc.intermediates,
				Certificate: client.tlsCertificate(), CRLs: tc.crls,
			})
			if tc.reason == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tc.reason)
			var de *Error
			require.ErrorAs(t, err, &de)
			assert.Equal(t, SideServer, de.Side)
		})
	}
}
