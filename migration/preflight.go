package migration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrHandshake: the TLS handshake with the destination failed for a
// reason other than a certificate (a plain-TCP service on the TLS port, no
// common protocol version or cipher suite).
var ErrHandshake = errors.New("migration: TLS handshake with the destination failed")

// PreflightConfig holds the source's client credentials, as the source
// libvirtd uses them to reach the destination.
type PreflightConfig struct {
	// RootCAs are the CAs the source trusts (its cacert.pem). Required.
	RootCAs *x509.CertPool

	// Certificate is the source's client certificate and key
	// (clientcert.pem, clientkey.pem). Required: a destination libvirtd
	// refuses a client without one.
	Certificate *tls.Certificate

	// CRLs, if set, are checked for both the destination's certificate and
	// the source's own. A CRL counts only for the issuer whose signature
	// it carries.
	CRLs []*x509.RevocationList

	// Time returns the current time. If nil, time.Now is used.
	Time func() time.Time

	// DialContext, if set, opens the TCP connection. If nil, a
	// net.Dialer is used.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
}

// PreflightError says why a migration to a destination would fail before
// any guest is touched. It unwraps to a reason sentinel (ErrPortClosed,
// ErrUnknownCA, ErrRevoked, ErrExpired, ErrNameMismatch, ErrClientRefused,
// ErrUnreachable, ErrHandshake) and to the underlying error.
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
	msg += strings.TrimPrefix(e.Err.Error(), "migration: ")
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
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

// libvirtConfirmOK is the byte a libvirtd server sends after a TLS
// handshake once it has accepted the client's certificate; it closes the
// connection instead when it refuses it.
const libvirtConfirmOK = 1

// Preflight checks that dst's libvirtd would accept a TLS connection from
// the source with cfg's credentials, as the migration's control
// connection needs, and says precisely why not:
//
//   - the source's own certificate: not from a CA it trusts
//     (ErrUnknownCA), expired (ErrExpired), revoked (ErrRevoked), all with
//     Side "source";
//   - nothing listens on dst's libvirt TLS port (ErrPortClosed), or no
//     answer (ErrUnreachable);
//   - the destination's certificate: unknown CA, expired, revoked, or not
//     carrying dst.Address (ErrNameMismatch), with Side "destination";
//   - the destination closed the connection after the handshake instead of
//     confirming, refusing the source's certificate (ErrClientRefused;
//     e.g. its DN is not in tls_allowed_dn_list, or the destination trusts
//     another CA or knows of a revocation).
//
// It dials dst.Address on dst.LibvirtPort (DefaultTLSPort if 0) and
// verifies the destination exactly as libvirt's client does: the chain to
// cfg.RootCAs, and dst.Address as a DNS name or IP address. If ctx has no
// deadline, DefaultPreflightTimeout applies.
func Preflight(ctx context.Context, dst Host, cfg *PreflightConfig) error {
	if err := dst.validate("destination"); err != nil {
		return err
	}
	if cfg == nil || cfg.RootCAs == nil || cfg.Certificate == nil || len(cfg.Certificate.Certificate) == 0 {
		return errors.New("migration: preflight needs RootCAs and the source's client Certificate")
	}
	now := time.Now
	if cfg.Time != nil {
		now = cfg.Time
	}
	addr := hostPortDial(dst.Address, portOr(dst.LibvirtPort, DefaultTLSPort))
	fail := func(side string, reason, cause error) error {
		return &PreflightError{Host: dst.label(), Addr: addr, Side: side, Err: reason, Cause: cause}
	}

	// The source's own certificate first: its problems are the cheapest
	// to name precisely, and the destination would only close the
	// connection.
	own, ownIntermediates, err := parseChain(cfg.Certificate)
	if err != nil {
		return fail("source", ErrHandshake, err)
	}
	if reason, err := verifyChain(own, ownIntermediates, cfg.RootCAs, cfg.CRLs, now(), x509.ExtKeyUsageClientAuth); err != nil {
		return fail("source", reason, err)
	}

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultPreflightTimeout)
		defer cancel()
	}
	dial := cfg.DialContext
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fail("", ErrPortClosed, err)
		}
		return fail("", ErrUnreachable, err)
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	var (
		destReason error // set by VerifyConnection
		destErr    error
	)
	certificate := *cfg.Certificate
	host, _, _ := strings.Cut(dst.Address, "%")
	tc := tls.Client(raw, &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverNameFor(host),
		// Verification is not skipped: VerifyConnection below does it,
		// so that each failure can be named.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				destReason, destErr = ErrHandshake, errors.New("destination sent no certificate")
				return destErr
			}
			leaf := cs.PeerCertificates[0]
			destReason, destErr = verifyChain(leaf, cs.PeerCertificates[1:], cfg.RootCAs, cfg.CRLs, now(), x509.ExtKeyUsageServerAuth)
			if destErr == nil {
				if err := leaf.VerifyHostname(host); err != nil {
					destReason, destErr = ErrNameMismatch, err
				}
			}
			return destErr
		},
		// Always present the certificate: crypto/tls would otherwise send
		// none when its issuer is not among the CAs the destination
		// lists, and the refusal would be blamed on a missing
		// certificate.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &certificate, nil
		},
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		if destErr != nil {
			return fail("destination", destReason, destErr)
		}
		if ctx.Err() != nil {
			return fail("", ErrUnreachable, fmt.Errorf("TLS handshake: %w", ctx.Err()))
		}
		var alert tls.AlertError
		if errors.As(err, &alert) && isCertificateAlert(alert) {
			return fail("source", ErrClientRefused, err)
		}
		return fail("", ErrHandshake, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = tc.SetReadDeadline(dl)
	}
	var confirm [1]byte
	if _, err := io.ReadFull(tc, confirm[:]); err != nil {
		if ctx.Err() != nil {
			return fail("", ErrUnreachable, fmt.Errorf("waiting for libvirt's confirmation: %w", ctx.Err()))
		}
		return fail("source", ErrClientRefused, fmt.Errorf("the destination closed the connection after the handshake instead of confirming (%v); it does not accept %q: check that it trusts the same CA, its CRL, and its tls_allowed_dn_list", err, own.Subject.String()))
	}
	if confirm[0] != libvirtConfirmOK {
		return fail("", ErrHandshake, fmt.Errorf("unexpected confirmation byte %#x: is this a libvirtd TLS port?", confirm[0]))
	}
	return nil
}

// isCertificateAlert reports whether a TLS alert from the server is about
// the client's certificate.
func isCertificateAlert(a tls.AlertError) bool {
	switch a {
	case 42, 43, 44, 45, 46, 48, 116: // bad, unsupported, revoked, expired, unknown certificate, unknown CA, certificate required
		return true
	}
	return false
}

// serverNameFor returns host for SNI, or "" for an IP address, which SNI
// does not carry.
func serverNameFor(host string) string {
	if net.ParseIP(host) != nil {
		return ""
	}
	return host
}

// parseChain returns the leaf and intermediates of c.
func parseChain(c *tls.Certificate) (*x509.Certificate, []*x509.Certificate, error) {
	var certs []*x509.Certificate
	for _, der := range c.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing the client certificate chain: %w", err)
		}
		certs = append(certs, cert)
	}
	return certs[0], certs[1:], nil
}

// verifyChain verifies leaf for usage at now, then its revocation along
// every chain found, and maps the failure to a reason sentinel.
func verifyChain(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, crls []*x509.RevocationList, now time.Time, usage x509.ExtKeyUsage) (reason, err error) {
	reason, err = verifyLeaf(leaf, intermediates, roots, crls, now, usage)
	if err != nil {
		err = fmt.Errorf("%q issued by %q: %w", leaf.Subject.String(), leaf.Issuer.String(), err)
	}
	return reason, err
}

func verifyLeaf(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, crls []*x509.RevocationList, now time.Time, usage x509.ExtKeyUsage) (error, error) {
	pool := x509.NewCertPool()
	for _, c := range intermediates {
		pool.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		var invalid x509.CertificateInvalidError
		var unknown x509.UnknownAuthorityError
		switch {
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
			return ErrExpired, err
		case errors.As(err, &unknown):
			return ErrUnknownCA, err
		}
		return ErrUnknownCA, err
	}
	for _, chain := range chains {
		for i := 0; i+1 < len(chain); i++ {
			if revokedBy(chain[i], chain[i+1], crls, now) {
				return ErrRevoked, fmt.Errorf("serial %x of %q is on its issuer's CRL", chain[i].SerialNumber, chain[i].Subject.String())
			}
		}
	}
	return nil, nil
}

// revokedBy reports whether a CRL signed by issuer lists cert.
func revokedBy(cert, issuer *x509.Certificate, crls []*x509.RevocationList, now time.Time) bool {
	for _, crl := range crls {
		if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) || crl.CheckSignatureFrom(issuer) != nil {
			continue
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(cert.SerialNumber) == 0 && !e.RevocationTime.After(now) {
				return true
			}
		}
	}
	return false
}

// LoadPreflightConfig reads the source's client credentials from a
// libvirt pkipath directory: cacert.pem, clientcert.pem, clientkey.pem
// and, if present, cacrl.pem. For root's default paths, pass the
// directories separately to LoadPreflightConfigFiles.
func LoadPreflightConfig(dir string) (*PreflightConfig, error) {
	return LoadPreflightConfigFiles(filepath.Join(dir, "cacert.pem"), filepath.Join(dir, "clientcert.pem"),
		filepath.Join(dir, "clientkey.pem"), filepath.Join(dir, "cacrl.pem"))
}

// LoadPreflightConfigFiles reads the CA certificates, the client
// certificate (with any intermediates), its key and, if crlFile is not
// empty and exists, a CRL (PEM or DER), e.g. /etc/pki/CA/cacert.pem,
// /etc/pki/libvirt/clientcert.pem, /etc/pki/libvirt/private/clientkey.pem
// and /etc/pki/CA/cacrl.pem.
func LoadPreflightConfigFiles(caFile, certFile, keyFile, crlFile string) (*PreflightConfig, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("migration: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("migration: %s holds no PEM CERTIFICATE block", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("migration: loading %s and %s: %w", certFile, keyFile, err)
	}
	cfg := &PreflightConfig{RootCAs: roots, Certificate: &cert}
	if crlFile == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(crlFile)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("migration: %w", err)
	}
	crls, err := parseCRLs(data)
	if err != nil {
		return nil, fmt.Errorf("migration: %s: %w", crlFile, err)
	}
	cfg.CRLs = crls
	return cfg, nil
}

// parseCRLs parses PEM "X509 CRL" blocks, or one DER CRL.
func parseCRLs(data []byte) ([]*x509.RevocationList, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		crl, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("neither a PEM X509 CRL block nor a DER CRL: %w", err)
		}
		return []*x509.RevocationList{crl}, nil
	}
	var crls []*x509.RevocationList
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return nil, err
		}
		crls = append(crls, crl)
	}
	if len(crls) == 0 {
		return nil, errors.New("no PEM X509 CRL block")
	}
	return crls, nil
}
