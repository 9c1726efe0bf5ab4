package migration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvmpki/kvmpki/internal/libvirtdial"
	"github.com/kvmpki/kvmpki/internal/pemx"
	"github.com/kvmpki/kvmpki/internal/revocation"
	"github.com/kvmpki/kvmpki/libvirttls"
)

// ErrHandshake: the TLS handshake with the destination failed for a
// reason other than a certificate (a plain-TCP service on the TLS port, no
// common protocol version or cipher suite).
var ErrHandshake = errors.New("migration: TLS handshake with the destination failed")

// PreflightOptions hold the source's client credentials, as the source
// libvirtd uses them to reach the destination.
type PreflightOptions struct {
	// CACerts are the CA certificates the source trusts (its
	// cacert.pem): the self-signed ones are trust anchors, the others
	// intermediates, as libvirt reads the file. Required.
	CACerts []*x509.Certificate

	// Certificate is the source's client certificate, with any
	// intermediates, and key (clientcert.pem, clientkey.pem). Required: a
	// destination libvirtd refuses a client without one.
	Certificate *tls.Certificate

	// CRLs are checked against every certificate of both chains, each
	// counting only for the CA whose key signed it. Each must verify
	// against a certificate of CACerts and be current (thisUpdate passed,
	// nextUpdate not), or Preflight fails. If empty, nothing is revoked.
	CRLs []*x509.RevocationList

	// Time returns the current time. If nil, time.Now is used.
	Time func() time.Time

	// Timeout bounds Preflight when ctx has no deadline: TCP connect, TLS
	// handshake and libvirt's confirmation byte. Zero means 10 seconds.
	Timeout time.Duration

	// DialContext, if set, opens the TCP connection. If nil, a
	// net.Dialer is used.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
}

// PreflightError says why a migration to a destination would fail before
// any guest is touched. It unwraps to a reason sentinel (ErrPortClosed,
// ErrUnknownAuthority, ErrRevoked, ErrExpired, ErrNameMismatch,
// ErrClientRefused, ErrUnreachable, ErrHandshake) and to the underlying
// error.
type PreflightError struct {
	// Host names the destination; Addr is the address dialled.
	Host, Addr string
	// Side is whose certificate is at fault: "source", "destination", or
	// "" for a network failure.
	Side string
	// Err is the reason sentinel.
	Err error
	// Cause is the underlying error, or nil.
	Cause error
}

func (e *PreflightError) Error() string {
	msg := fmt.Sprintf("migration: preflight to %s at %s: ", e.Host, e.Addr)
	if e.Side != "" {
		msg += e.Side + " certificate: "
	}
	switch {
	case e.Cause == nil:
		msg += strings.TrimPrefix(e.Err.Error(), "migration: ")
	case errors.Is(e.Cause, e.Err):
		msg += e.Cause.Error()
	default:
		msg += strings.TrimPrefix(e.Err.Error(), "migration: ") + ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap returns the reason and the cause.
func (e *PreflightError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

// Preflight checks that dst's libvirtd would accept a TLS connection from
// the source with opts's credentials, as the migration's control
// connection needs, and says precisely why not:
//
//   - the source's own certificate: not from a CA it trusts
//     (ErrUnknownAuthority), expired (ErrExpired), revoked (ErrRevoked),
//     all with Side "source";
//   - nothing listens on dst's libvirt TLS port (ErrPortClosed), or no
//     answer (ErrUnreachable);
//   - the destination's certificate: unknown CA, expired, revoked, or not
//     carrying dst.Address (ErrNameMismatch), with Side "destination";
//   - the destination closed the connection after the handshake instead of
//     confirming, refusing the source's certificate (ErrClientRefused;
//     e.g. its DN is not in tls_allowed_dn_list, or the destination trusts
//     another CA or knows of a revocation).
//
// It dials dst.Address on dst.LibvirtPort (16514 if 0) and verifies the
// destination exactly as libvirt's client does (internal/libvirtdial):
// the chain to opts.CACerts, dst.Address as a DNS name or an IP address
// (IP SANs only), and revocation of every certificate of both chains.
func Preflight(ctx context.Context, dst Host, opts *PreflightOptions) error {
	if err := dst.validate("destination"); err != nil {
		return err
	}
	if opts == nil || len(opts.CACerts) == 0 || opts.Certificate == nil || len(opts.Certificate.Certificate) == 0 {
		return errors.New("migration: preflight needs CACerts and the source's client Certificate")
	}
	now := time.Now
	if opts.Time != nil {
		now = opts.Time
	}
	crls, err := revocation.NewSet(opts.CRLs, opts.CACerts, now())
	if err != nil {
		return fmt.Errorf("migration: preflight: %w", err)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = defaultPreflightTimeout
	}
	roots, inter := libvirtdial.SplitCAs(opts.CACerts)
	host, _, _ := strings.Cut(dst.Address, "%")
	addr := hostPortDial(dst.Address, portOr(dst.LibvirtPort, defaultTLSPort))
	err = libvirtdial.Dial(ctx, &libvirtdial.Options{
		Addr:          addr,
		ServerName:    host,
		Roots:         roots,
		Intermediates: inter,
		Certificate:   opts.Certificate,
		CRLs:          crls,
		Time:          now,
		Timeout:       timeout,
		DialContext:   opts.DialContext,
	})
	var de *libvirtdial.Error
	if err == nil || !errors.As(err, &de) {
		return err
	}
	pe := &PreflightError{Host: dst.label(), Addr: addr, Err: de.Reason, Cause: de.Err}
	switch de.Side {
	case libvirtdial.SideClient:
		pe.Side = "source"
	case libvirtdial.SideServer:
		pe.Side = "destination"
	}
	switch de.Reason {
	case libvirtdial.ErrPortClosed:
		pe.Err = ErrPortClosed
	case libvirtdial.ErrUnreachable:
		pe.Err = ErrUnreachable
	case libvirtdial.ErrHandshake:
		pe.Err = ErrHandshake
	case libvirtdial.ErrClientRefused:
		pe.Err = ErrClientRefused
	}
	return pe
}

// LoadPreflightOptions reads the source's client credentials from a
// libvirt pkipath directory: libvirttls.PKIPathCACert,
// PKIPathClientCert, PKIPathClientKey and, if present, PKIPathCRL. For
// root's default paths, pass the files to LoadPreflightOptionsFiles.
func LoadPreflightOptions(ctx context.Context, dir string) (*PreflightOptions, error) {
	return LoadPreflightOptionsFiles(ctx, filepath.Join(dir, libvirttls.PKIPathCACert), filepath.Join(dir, libvirttls.PKIPathClientCert),
		filepath.Join(dir, libvirttls.PKIPathClientKey), filepath.Join(dir, libvirttls.PKIPathCRL))
}

// LoadPreflightOptionsFiles reads the CA certificates, the client
// certificate (with any intermediates), its unencrypted key and, if
// crlFile is not empty and exists, a CRL file (PEM or DER), e.g.
// /etc/pki/CA/cacert.pem, /etc/pki/libvirt/clientcert.pem,
// /etc/pki/libvirt/private/clientkey.pem and /etc/pki/CA/cacrl.pem. Each
// file may hold at most 1 MiB. The CRLs' signatures and times are checked
// by Preflight. It returns ctx.Err() when ctx is done before the files
// are read.
func LoadPreflightOptionsFiles(ctx context.Context, caFile, certFile, keyFile, crlFile string) (*PreflightOptions, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	caPEM, err := readPKIFile(caFile)
	if err != nil {
		return nil, err
	}
	cas, err := pemx.ParseCertificates(caPEM)
	if err != nil {
		return nil, fmt.Errorf("migration: %s: %w", caFile, err)
	}
	certPEM, err := readPKIFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readPKIFile(keyFile)
	if err != nil {
		return nil, err
	}
	chain, key, err := pemx.ParseKeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("migration: %s and %s: %w", certFile, keyFile, err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	opts := &PreflightOptions{CACerts: cas, Certificate: cert}
	if crlFile == "" {
		return opts, nil
	}
	data, err := readPKIFile(crlFile)
	if errors.Is(err, os.ErrNotExist) {
		return opts, nil
	}
	if err != nil {
		return nil, err
	}
	if opts.CRLs, err = pemx.ParseCRLs(data); err != nil {
		return nil, fmt.Errorf("migration: %s: %w", crlFile, err)
	}
	return opts, nil
}

// readPKIFile reads a PKI file (pemx.ReadFile).
func readPKIFile(path string) ([]byte, error) {
	b, err := pemx.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("migration: %w", err)
	}
	return b, nil
}
