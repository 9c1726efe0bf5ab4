package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/kvmpki/kvmpki/provider"
)

// PeerServerTLSConfig returns the tls.Config of the cluster port between
// management servers (9090 in CloudStack), presenting id: a client is
// accepted only with a certificate that the provider accepts for client
// authentication (chain, role, validity, revocation) and that carries the
// management marker name (Settings.ManagementSAN), so an agent's or
// console proxy's certificate is refused. There is no relaxation.
func (m *Manager) PeerServerTLSConfig(id *Identity) (*tls.Config, error) {
	if id == nil {
		return nil, errors.New("ca: the management server's Identity is required")
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: id.GetCertificate,
		ClientAuth:     tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return m.verifyManagementPeer(cs.PeerCertificates, provider.UsageClientAuth, "")
		},
	}, nil
}

// PeerClientTLSConfig returns the tls.Config a management server dials
// another one's cluster port with, at serverName (its name or address),
// presenting id: the server must chain to the CA with its name or
// address, be accepted by the provider (revocation included) and carry
// the management marker name.
func (m *Manager) PeerClientTLSConfig(id *Identity, serverName string) (*tls.Config, error) {
	if id == nil {
		return nil, errors.New("ca: the management server's Identity is required")
	}
	if serverName == "" {
		return nil, errors.New("ca: the peer's name or address is required")
	}
	var roots *x509.CertPool
	err := m.with(func(h *handle) error {
		st, err := h.caCerts(context.Background(), false)
		if err == nil {
			roots = st.pool
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              roots,
		ServerName:           serverName,
		GetClientCertificate: id.GetClientCertificate,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return m.verifyManagementPeer(cs.PeerCertificates, provider.UsageServerAuth, serverName)
		},
	}, nil
}

func (m *Manager) verifyManagementPeer(certs []*x509.Certificate, usage provider.Usage, serverName string) error {
	err := m.with(func(h *handle) error {
		if err := h.verifyCerts(context.Background(), certs, usage, serverName, m.s.now()); err != nil {
			return err
		}
		if !m.s.hasMarker(certs[0]) {
			return &provider.VerifyError{Subject: certs[0].Subject.String(), Serial: certs[0].SerialNumber, Err: errNotManagement}
		}
		return nil
	})
	if err != nil {
		m.s.logger.Warn("ca: cluster peer refused", "error", err)
	}
	return err
}
