package libvirtdial

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/kvmpki/kvmpki/internal/pkicore"
	"github.com/kvmpki/kvmpki/internal/revocation"
)

// Reasons for network and protocol failures; certificate failures use the
// pkicore sentinels.
var (
	// ErrPortClosed: nothing listens on the address (connection refused).
	ErrPortClosed = errors.New("port closed")
	// ErrUnreachable: no answer in time, or no route.
	ErrUnreachable = errors.New("unreachable")
	// ErrHandshake: the TLS handshake failed for a reason other than a
	// certificate, or the peer is not a libvirtd TLS port.
	ErrHandshake = errors.New("TLS handshake failed")
	// ErrClientRefused: libvirtd refused the client's certificate (it
	// closed the connection or sent a certificate alert).
	ErrClientRefused = errors.New("libvirtd refused the client certificate")
)

// Side says whose certificate is at fault.
type Side string

// Sides of a connection.
const (
	SideNone   Side = ""       // a network or protocol failure
	SideClient Side = "client" // the dialling side's own certificate
	SideServer Side = "server" // libvirtd's certificate
)

// Error is a failed Dial.
type Error struct {
	// Addr is the address dialled.
	Addr string
	// Side is whose certificate is at fault, or SideNone.
	Side Side
	// Reason is a sentinel of this package or of internal/pkicore.
	Reason error
	// Err is the underlying error, or nil.
	Err error
}

func (e *Error) Error() string {
	msg := e.Addr + ": "
	if e.Side != SideNone {
		msg += string(e.Side) + " certificate: "
	}
	switch {
	case e.Err == nil:
		return msg + e.Reason.Error()
	case errors.Is(e.Err, e.Reason):
		return msg + e.Err.Error()
	}
	return msg + e.Reason.Error() + ": " + e.Err.Error()
}

// Unwrap returns the reason and the underlying error.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Reason, e.Err}
	}
	return []error{e.Reason}
}

// Options say where and how to dial.
type Options struct {
	// Addr is libvirtd's TLS address, "host:port". Required.
	Addr string
	// ServerName is the name libvirtd's certificate must carry. If empty,
	// the host of Addr without an IPv6 zone. An IP address is matched
	// against the certificate's IP SANs only.
	ServerName string
	// Roots are the CAs both certificates must chain to. Required.
	Roots *x509.CertPool
	// Intermediates are CA certificates that are not trust anchors (the
	// intermediates of the CA file) used to build both chains, besides
	// the ones each side sends. Optional.
	Intermediates []*x509.Certificate
	// Certificate is the client's certificate chain (leaf first, without
	// the root) and key. Required: libvirtd refuses a client without one.
	Certificate *tls.Certificate
	// CRLs revoke certificates of both chains. If nil, none.
	CRLs *revocation.Set
	// Time returns the current time. If nil, time.Now is used.
	Time func() time.Time
	// Timeout bounds the whole dial when ctx has no deadline. Zero means
	// 10 seconds.
	Timeout time.Duration
	// DialContext, if set, opens the TCP connection. If nil, a
	// net.Dialer is used.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
}

// Dial connects to libvirtd as a libvirt client does (see the package
// doc) and closes the connection once libvirtd has confirmed. A nil error
// means libvirtd accepted the client and the client accepted libvirtd.
func Dial(ctx context.Context, o *Options) error {
	if o == nil || o.Addr == "" || o.Roots == nil || o.Certificate == nil || len(o.Certificate.Certificate) == 0 {
		return errors.New("libvirt TLS dial needs an address, roots and a client certificate")
	}
	addr := o.Addr
	fail := func(side Side, reason, err error) error {
		return &Error{Addr: addr, Side: side, Reason: reason, Err: err}
	}
	now := time.Now
	if o.Time != nil {
		now = o.Time
	}
	name := o.ServerName
	if name == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return fail(SideNone, ErrUnreachable, err)
		}
		name, _, _ = strings.Cut(host, "%")
	}

	// The client's own certificate first: libvirtd would only close the
	// connection, and here the reason can be named.
	own, err := CheckCertificate(o.Certificate, o.Roots, o.Intermediates, o.CRLs, now(), x509.ExtKeyUsageClientAuth)
	if err != nil {
		return fail(SideClient, reasonOf(err), err)
	}

	if _, ok := ctx.Deadline(); !ok {
		timeout := o.Timeout
		if timeout <= 0 {
			timeout = defaultTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	dial := o.DialContext
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fail(SideNone, ErrPortClosed, err)
		}
		return fail(SideNone, ErrUnreachable, err)
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	var serverErr error // set by VerifyConnection
	certificate := *o.Certificate
	tc := tls.Client(raw, &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: name, // an IP literal sends no SNI
		// Verification is not skipped: VerifyConnection below does it,
		// with o.Intermediates, for every handshake (there is no session
		// cache to resume from), so that each failure can be named.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			serverErr = verifyServer(cs.PeerCertificates, o, name, now())
			return serverErr
		},
		// Always present the certificate: crypto/tls would otherwise
		// send none when its issuer is not among the CAs libvirtd lists,
		// and the refusal would be blamed on a missing certificate.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &certificate, nil
		},
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		var alert tls.AlertError
		switch {
		case serverErr != nil:
			return fail(SideServer, reasonOf(serverErr), serverErr)
		case ctx.Err() != nil:
			return fail(SideNone, ErrUnreachable, fmt.Errorf("TLS handshake: %w", ctx.Err()))
		case errors.As(err, &alert) && isCertificateAlert(alert):
			return fail(SideClient, ErrClientRefused, err)
		}
		return fail(SideNone, ErrHandshake, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = tc.SetReadDeadline(dl)
	}
	var confirm [1]byte
	if _, err := io.ReadFull(tc, confirm[:]); err != nil {
		if ctx.Err() != nil {
			return fail(SideNone, ErrUnreachable, fmt.Errorf("waiting for libvirtd's confirmation: %w", ctx.Err()))
		}
		return fail(SideClient, ErrClientRefused, fmt.Errorf("libvirtd closed the connection after the handshake instead of confirming (%v); it does not accept %q: check that it trusts the same CA, its CRL, and its tls_allowed_dn_list", err, own.Subject.String()))
	}
	if confirm[0] != confirmOK {
		return fail(SideNone, ErrHandshake, fmt.Errorf("unexpected confirmation byte %#x: is this a libvirtd TLS port?", confirm[0]))
	}
	return nil
}

// verifyServer verifies libvirtd's chain for server authentication, its
// revocation, and name: a DNS name, or an IP address matched against IP
// SANs only.
func verifyServer(certs []*x509.Certificate, o *Options, name string, now time.Time) error {
	if len(certs) == 0 {
		return pkicore.ErrNoPeerCertificate
	}
	inter := x509.NewCertPool()
	for _, c := range o.Intermediates {
		inter.AddCert(c)
	}
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := revocation.Verify(certs[0], x509.VerifyOptions{
		Roots: o.Roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, o.CRLs); err != nil {
		return err
	}
	if err := certs[0].VerifyHostname(name); err != nil {
		return pkicore.VerifyReason(err)
	}
	return nil
}

// CheckCertificate verifies the leaf of c (with c's other certificates and
// intermediates as intermediates) against roots for usage at now and checks every chain
// found against crls. It returns the leaf. Errors wrap a pkicore
// sentinel.
func CheckCertificate(c *tls.Certificate, roots *x509.CertPool, intermediates []*x509.Certificate, crls *revocation.Set, now time.Time, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if c == nil || len(c.Certificate) == 0 {
		return nil, pkicore.ErrNoPeerCertificate
	}
	inter := x509.NewCertPool()
	for _, ic := range intermediates {
		inter.AddCert(ic)
	}
	var leaf *x509.Certificate
	for i, der := range c.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: parsing certificate %d of the chain: %w", pkicore.ErrUnknownAuthority, i+1, err)
		}
		if i == 0 {
			leaf = cert
		} else {
			inter.AddCert(cert)
		}
	}
	_, err := revocation.Verify(leaf, x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage},
	}, crls)
	return leaf, err
}

// reasonOf returns the pkicore sentinel err wraps, or ErrHandshake.
func reasonOf(err error) error {
	for _, s := range []error{pkicore.ErrRevoked, pkicore.ErrExpired, pkicore.ErrNameMismatch,
		pkicore.ErrIncompatibleUsage, pkicore.ErrNoPeerCertificate, pkicore.ErrUnknownAuthority} {
		if errors.Is(err, s) {
			return s
		}
	}
	return ErrHandshake
}

// isCertificateAlert reports whether a TLS alert from libvirtd is about
// the client's certificate.
func isCertificateAlert(a tls.AlertError) bool {
	switch a {
	case 42, 43, 44, 45, 46, 48, 116: // bad, unsupported, revoked, expired, unknown certificate, unknown CA, certificate required
		return true
	}
	return false
}

// SplitCAs splits the certificates of a CA file as libvirt (GnuTLS)
// trusts them: the self-signed ones are roots, the others intermediates.
func SplitCAs(cas []*x509.Certificate) (roots *x509.CertPool, intermediates []*x509.Certificate) {
	roots = x509.NewCertPool()
	for _, ca := range cas {
		if bytes.Equal(ca.RawIssuer, ca.RawSubject) {
			roots.AddCert(ca)
		} else {
			intermediates = append(intermediates, ca)
		}
	}
	return roots, intermediates
}
