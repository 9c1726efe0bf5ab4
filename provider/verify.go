package provider

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// Check checks the contract of a verify request, the checks a
// [PeerVerifier] makes before looking at the certificates: a nil request,
// a Usage that is not UsageClientAuth or UsageServerAuth, and
// UsageServerAuth without a ServerName are refused with a *[RequestError].
func (r *VerifyRequest) Check() error {
	switch {
	case r == nil:
		return &RequestError{Reason: "nil verify request"}
	case !r.Usage.Valid():
		return &RequestError{Field: "usage", Reason: fmt.Sprintf("%v is not clientAuth or serverAuth", r.Usage)}
	case r.Usage == UsageServerAuth && r.ServerName == "":
		return &RequestError{Field: "server name", Reason: "required to verify a server (without it any host's server certificate would pass)"}
	}
	return nil
}

// VerifyChainOptions are the options of [VerifyChain].
type VerifyChainOptions struct {
	// Usage is the use being made of the leaf. It must be set.
	Usage Usage
	// ServerName is the DNS name or IP address the leaf must be valid
	// for. It is required with UsageServerAuth and ignored otherwise.
	ServerName string
	// Time is the verification time. If zero, the current time is used.
	Time time.Time
	// InsecureAllowExpired accepts a leaf outside its validity period
	// (the chain is verified at the moment of the leaf's validity nearest
	// to Time, so the CA certificates must still be valid then). Only
	// for a CA that must keep hosts with expired certificates connected.
	InsecureAllowExpired bool
}

// VerifyChain verifies that leaf chains to roots through intermediates
// (the certificates the peer presented after its leaf, or the provider's
// own) for opts.Usage and, for a server, opts.ServerName, and that it is
// not a CA certificate (GnuTLS refuses those as peers too). It returns the
// chains [x509.Certificate.Verify] found.
//
// A refusal is a *[VerifyError] whose reason matches one of
// [ErrUnknownAuthority], [ErrExpired], [ErrIncompatibleUsage] or
// [ErrNameMismatch], with the crypto/x509 error kept for its detail; a nil
// leaf gives [ErrNoCertificate]. Nil roots (which would mean the system
// roots to crypto/x509) and bad options are refused with a
// *[RequestError]. Revocation is the caller's to check.
func VerifyChain(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, opts *VerifyChainOptions) ([][]*x509.Certificate, error) {
	if opts == nil {
		opts = &VerifyChainOptions{}
	}
	req := VerifyRequest{Usage: opts.Usage, ServerName: opts.ServerName}
	if err := req.Check(); err != nil {
		return nil, err
	}
	if roots == nil {
		return nil, &RequestError{Field: "roots", Reason: "missing (crypto/x509 would trust the system roots)"}
	}
	if leaf == nil {
		return nil, &VerifyError{Err: ErrNoCertificate}
	}
	fail := func(err error) error {
		return &VerifyError{Subject: leaf.Subject.String(), Serial: leaf.SerialNumber, Err: err}
	}
	if leaf.IsCA {
		return nil, fail(fmt.Errorf("%w: a CA certificate cannot be a TLS peer", ErrIncompatibleUsage))
	}
	eku, _ := opts.Usage.ExtKeyUsage()
	vo := x509.VerifyOptions{
		Roots:       roots,
		KeyUsages:   []x509.ExtKeyUsage{eku},
		CurrentTime: opts.Time,
	}
	if opts.Usage == UsageServerAuth {
		vo.DNSName = opts.ServerName
	}
	if len(intermediates) > 0 {
		vo.Intermediates = x509.NewCertPool()
		for _, c := range intermediates {
			if c == nil {
				return nil, fail(errors.New("nil intermediate certificate"))
			}
			vo.Intermediates.AddCert(c)
		}
	}
	if opts.InsecureAllowExpired {
		now := opts.Time
		if now.IsZero() {
			now = time.Now()
		}
		vo.CurrentTime = clampTime(now, leaf.NotBefore, leaf.NotAfter)
	}
	chains, err := leaf.Verify(vo)
	if err != nil {
		return nil, fail(pkicore.VerifyReason(err))
	}
	return chains, nil
}

func clampTime(t, lo, hi time.Time) time.Time {
	if t.Before(lo) {
		return lo
	}
	if t.After(hi) {
		return hi
	}
	return t
}
