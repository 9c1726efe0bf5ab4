package providertest

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// foreignCA is a self-signed CA that impersonates a provider's issuing CA:
// same subject, same subject key identifier, different key.
type foreignCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newForeignCA(t *testing.T, impersonate *x509.Certificate) *foreignCA {
	t.Helper()
	key := newECDSAKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          unknownSerial(t),
		Subject:               impersonate.Subject,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              impersonate.NotAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          impersonate.SubjectKeyId,
	}
	tmpl.RawSubject = impersonate.RawSubject
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &foreignCA{cert: cert, key: key}
}

// leafLike returns a certificate of the foreign CA that copies orig's
// serial, subject, names, validity and usages.
func (f *foreignCA) leafLike(t *testing.T, orig *x509.Certificate) *x509.Certificate {
	t.Helper()
	key := newECDSAKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: orig.SerialNumber,
		Subject:      orig.Subject,
		NotBefore:    orig.NotBefore,
		NotAfter:     orig.NotAfter,
		DNSNames:     orig.DNSNames,
		IPAddresses:  orig.IPAddresses,
		ExtKeyUsage:  orig.ExtKeyUsage,
		SubjectKeyId: orig.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.cert, key.Public(), f.key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

// presented returns what a TLS peer presents: the leaf, then the chain
// without the root.
func presented(it *issued) []*x509.Certificate {
	certs := []*x509.Certificate{it.cert()}
	if n := len(it.res.Chain); n > 1 {
		certs = append(certs, it.res.Chain[:n-1]...)
	}
	return certs
}

// peerRequest returns a request to verify it as a TLS peer for usage, with
// its first DNS name as the server name when verifying a server.
func peerRequest(it *issued, usage provider.Usage) *provider.VerifyRequest {
	req := &provider.VerifyRequest{Certificates: presented(it), Usage: usage}
	if usage == provider.UsageServerAuth {
		req.ServerName = it.req.DNSNames[0]
	}
	return req
}

func (s *suite) testVerifyPeer(t *testing.T, p provider.Provider) {
	v, ok := p.(provider.PeerVerifier)
	if !ok {
		t.Skip("provider does not implement provider.PeerVerifier")
	}
	ca := s.caCertificates(t, p)
	// Only roles the provider issues: a client-capable and a
	// server-capable one when it has them.
	var client, server *issued
	if role, ok := s.clientRole(); ok {
		client = s.issue(t, p, role, nil)
	}
	if role, ok := s.serverRole(); ok {
		server = s.issue(t, p, role, nil)
	}
	// peer is a certificate of a role the provider issues, with the
	// usage it is verified for.
	peer, peerUsage := client, provider.UsageClientAuth
	if peer == nil {
		peer, peerUsage = server, provider.UsageServerAuth
	}
	newPeer := func(t *testing.T) *issued {
		t.Helper()
		return s.issue(t, p, peer.req.Role, nil)
	}

	verify := func(t *testing.T, req *provider.VerifyRequest) error {
		t.Helper()
		return v.VerifyPeer(t.Context(), req)
	}
	// refused asserts that err is a *VerifyError matching reason.
	refused := func(t *testing.T, err error, reason error) {
		t.Helper()
		require.Error(t, err, "the peer must be refused")
		assert.ErrorIs(t, err, reason)
		var ve *provider.VerifyError
		assert.ErrorAs(t, err, &ve, "VerifyPeer must return a *provider.VerifyError")
	}

	s.run(t, "Accepted", func(t *testing.T) {
		if client != nil {
			leafOnly := &provider.VerifyRequest{Certificates: []*x509.Certificate{client.cert()}, Usage: provider.UsageClientAuth}
			assert.NoError(t, verify(t, leafOnly), "%s certificate as a client, leaf only", client.req.Role)
			assert.NoError(t, verify(t, peerRequest(client, provider.UsageClientAuth)), "%s certificate as a client, with its chain", client.req.Role)
		}
		if server != nil {
			name := server.req.DNSNames[0]
			assert.NoError(t, verify(t, peerRequest(server, provider.UsageServerAuth)), "%s certificate as a server for %s", server.req.Role, name)
			for _, ip := range s.ips {
				req := peerRequest(server, provider.UsageServerAuth)
				req.ServerName = ip.String()
				assert.NoError(t, verify(t, req), "%s certificate as a server for %s", server.req.Role, ip)
			}
		}
	})
	s.run(t, "Revoked", func(t *testing.T) {
		it := newPeer(t)
		s.revoke(t, p, it.cert(), provider.ReasonKeyCompromise)
		err := verify(t, peerRequest(it, peerUsage))
		refused(t, err, provider.ErrRevoked)
		var re *provider.RevokedError
		if assert.ErrorAs(t, err, &re, "the reason should be a *provider.RevokedError") {
			assert.Zero(t, re.Serial.Cmp(it.cert().SerialNumber), "RevokedError.Serial")
			assert.Equal(t, provider.ReasonKeyCompromise.String(), re.Reason.String(), "RevokedError.Reason")
		}
	})
	s.run(t, "UnknownAuthority", func(t *testing.T) {
		foreign := newForeignCA(t, ca.issuer())
		fake := foreign.leafLike(t, peer.cert())
		req := peerRequest(peer, peerUsage)
		req.Certificates = []*x509.Certificate{fake}
		refused(t, verify(t, req), provider.ErrUnknownAuthority)
		// Presenting the impersonating CA must not help.
		req.Certificates = []*x509.Certificate{fake, foreign.cert}
		refused(t, verify(t, req), provider.ErrUnknownAuthority)
	})
	s.run(t, "IncompatibleUsage", func(t *testing.T) {
		tested := false
		if s.has(provider.RoleClient) {
			it := s.issue(t, p, provider.RoleClient, nil)
			refused(t, verify(t, peerRequest(it, provider.UsageServerAuth)), provider.ErrIncompatibleUsage)
			tested = true
		}
		if s.has(provider.RoleServer) {
			it := s.issue(t, p, provider.RoleServer, nil)
			refused(t, verify(t, peerRequest(it, provider.UsageClientAuth)), provider.ErrIncompatibleUsage)
			tested = true
		}
		if !tested {
			t.Skip("Options.Roles holds neither client nor server")
		}
	})
	s.run(t, "NameMismatch", func(t *testing.T) {
		if server == nil {
			t.Skip("Options.Roles holds neither host nor server")
		}
		for _, name := range []string{s.name("other"), "198.51.100.7"} {
			req := peerRequest(server, provider.UsageServerAuth)
			req.ServerName = name
			refused(t, verify(t, req), provider.ErrNameMismatch)
		}
	})
	s.run(t, "Expired", func(t *testing.T) {
		c := peer.cert()
		req := peerRequest(peer, peerUsage)
		req.Time = c.NotAfter.Add(time.Hour)
		refused(t, verify(t, req), provider.ErrExpired)
		req.Time = c.NotBefore.Add(-time.Hour)
		refused(t, verify(t, req), provider.ErrExpired)
	})
	s.run(t, "NoCertificate", func(t *testing.T) {
		refused(t, verify(t, &provider.VerifyRequest{Usage: provider.UsageClientAuth}), provider.ErrNoCertificate)
		refused(t, verify(t, &provider.VerifyRequest{Certificates: []*x509.Certificate{}, Usage: provider.UsageServerAuth, ServerName: s.name("absent")}), provider.ErrNoCertificate)
	})
	s.run(t, "BadRequest", func(t *testing.T) {
		// A zero Usage would be x509.ExtKeyUsageAny, and a server
		// check without a name would accept any host's certificate.
		for _, tc := range []struct {
			name string
			req  *provider.VerifyRequest
		}{
			{name: "zero Usage", req: &provider.VerifyRequest{Certificates: presented(peer)}},
			{name: "unknown Usage", req: &provider.VerifyRequest{Certificates: presented(peer), Usage: provider.Usage(99)}},
			{name: "server without a name", req: &provider.VerifyRequest{Certificates: presented(peer), Usage: provider.UsageServerAuth}},
		} {
			assert.ErrorIs(t, verify(t, tc.req), provider.ErrInvalidRequest, "%s must be refused as a bad request", tc.name)
		}
	})
	s.run(t, "MutualTLS", func(t *testing.T) {
		if client == nil || server == nil {
			t.Skip("Options.Roles gives no client or no server certificate")
		}
		s.testMutualTLS(t, p, v, ca)
	})
}

// tlsCertificate turns an issued certificate into a TLS identity that
// sends its chain without the root.
func tlsCertificate(it *issued) tls.Certificate {
	var chain [][]byte
	for _, c := range presented(it) {
		chain = append(chain, c.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: it.key, Leaf: it.cert()}
}

// testMutualTLS runs real handshakes between peers that both judge each
// other with the provider, then revokes the client and expects the next
// handshake, which may resume the first session, to be refused.
func (s *suite) testMutualTLS(t *testing.T, p provider.Provider, v provider.PeerVerifier, ca *caInfo) {
	serverRole, _ := s.serverRole()
	clientRole, _ := s.clientRole()
	server := s.issue(t, p, serverRole, nil)
	client := s.issue(t, p, clientRole, nil)
	roots := x509.NewCertPool()
	for _, c := range ca.certs {
		if isSelfSigned(c) {
			roots.AddCert(c)
		}
	}
	serverCfg := &tls.Config{
		Certificates:     []tls.Certificate{tlsCertificate(server)},
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: provider.VerifyClientConnection(v, nil),
		MinVersion:       tls.VersionTLS12,
	}
	clientCfg := &tls.Config{
		Certificates:       []tls.Certificate{tlsCertificate(client)},
		RootCAs:            roots,
		ServerName:         server.req.DNSNames[0],
		VerifyConnection:   provider.VerifyServerConnection(v, server.req.DNSNames[0], nil),
		ClientSessionCache: tls.NewLRUClientSessionCache(1),
		MinVersion:         tls.VersionTLS12,
	}

	clientErr, serverErr := handshake(t, serverCfg, clientCfg)
	require.NoError(t, serverErr, "server side of the handshake")
	require.NoError(t, clientErr, "client side of the handshake")

	s.revoke(t, p, client.cert(), provider.ReasonKeyCompromise)
	clientErr, serverErr = handshake(t, serverCfg, clientCfg)
	assert.ErrorIs(t, serverErr, provider.ErrRevoked, "the server must refuse the revoked client")
	assert.Error(t, clientErr, "the client must see the refusal")
}

// handshake connects a client to a server over loopback TCP and exchanges
// one byte from server to client, which delivers a refusal of the client
// certificate (and TLS 1.3 session tickets) to the client.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		srv := tls.Server(conn, serverCfg)
		if err := srv.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = srv.Write([]byte{1})
		done <- err
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	cli := tls.Client(conn, clientCfg)
	clientErr = cli.Handshake()
	if clientErr == nil {
		_, clientErr = io.ReadFull(cli, make([]byte, 1))
	}
	return clientErr, <-done
}
