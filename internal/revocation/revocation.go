package revocation

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/kvmpki/kvmpki/internal/pemx"
	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// ErrInvalidCRL: a CRL is not signed by any of the given CAs, or is not
// current.
var ErrInvalidCRL = errors.New("invalid CRL")

// Set is a set of CRLs, each verified against the CA that signed it. A
// nil *Set holds no CRLs and revokes nothing.
type Set struct {
	crls []entry
}

type entry struct {
	crl *x509.RevocationList
	ca  *x509.Certificate // the CA whose key verified crl's signature
}

// NewSet verifies each CRL's signature against cas and its thisUpdate and
// nextUpdate against now. Any CRL that fails gives an error wrapping
// ErrInvalidCRL: a CRL nobody can vouch for, or a stale one, is not
// silently ignored. No CRLs give an empty set.
func NewSet(crls []*x509.RevocationList, cas []*x509.Certificate, now time.Time) (*Set, error) {
	s := &Set{}
	for i, crl := range crls {
		ca := signer(crl, cas)
		if ca == nil {
			return nil, fmt.Errorf("%w: CRL %d (issuer %q) is not signed by a CA of the CA file", ErrInvalidCRL, i+1, crl.Issuer.String())
		}
		if now.Before(crl.ThisUpdate) {
			return nil, fmt.Errorf("%w: CRL %d of %q is not valid before %s", ErrInvalidCRL, i+1, crl.Issuer.String(), crl.ThisUpdate.UTC().Format(time.RFC3339))
		}
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			return nil, fmt.Errorf("%w: CRL %d of %q is stale: its next update was due %s", ErrInvalidCRL, i+1, crl.Issuer.String(), crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		s.crls = append(s.crls, entry{crl: crl, ca: ca})
	}
	return s, nil
}

// Parse parses a CRL file (see [pemx.ParseCRLs]) and returns its CRLs as
// a Set verified against cas at now. Empty data gives an empty set.
func Parse(data []byte, cas []*x509.Certificate, now time.Time) (*Set, error) {
	if len(data) == 0 {
		return &Set{}, nil
	}
	crls, err := pemx.ParseCRLs(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCRL, err)
	}
	return NewSet(crls, cas, now)
}

// signer returns the CA of cas whose name issued crl and whose key
// signed it, or nil.
func signer(crl *x509.RevocationList, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if bytes.Equal(crl.RawIssuer, ca.RawSubject) && crl.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// Len returns the number of CRLs in s.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.crls)
}

// CRLs returns the CRLs of s.
func (s *Set) CRLs() []*x509.RevocationList {
	if s == nil {
		return nil
	}
	out := make([]*x509.RevocationList, len(s.crls))
	for i, e := range s.crls {
		out[i] = e.crl
	}
	return out
}

// CheckChain checks every certificate of chain but the last against the
// CRLs issued by the next one: by the same key (the CRL verified against
// a CA with the issuer's public key) and the same name. An entry counts
// from its revocation time. The error wraps [pkicore.ErrRevoked] and
// names the certificate.
func (s *Set) CheckChain(chain []*x509.Certificate, now time.Time) error {
	if s == nil {
		return nil
	}
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		for _, e := range s.crls {
			if !bytes.Equal(e.ca.RawSubjectPublicKeyInfo, issuer.RawSubjectPublicKeyInfo) ||
				!bytes.Equal(e.crl.RawIssuer, issuer.RawSubject) {
				continue
			}
			for _, r := range e.crl.RevokedCertificateEntries {
				if r.SerialNumber != nil && r.SerialNumber.Cmp(cert.SerialNumber) == 0 && !r.RevocationTime.After(now) {
					return fmt.Errorf("%w: serial %x of %q is on its issuer's CRL (revoked %s)", pkicore.ErrRevoked,
						cert.SerialNumber, cert.Subject.String(), r.RevocationTime.UTC().Format(time.RFC3339))
				}
			}
		}
	}
	return nil
}

// CheckChains checks each chain with CheckChain: a certificate revoked on
// any chain found is revoked.
func (s *Set) CheckChains(chains [][]*x509.Certificate, now time.Time) error {
	for _, chain := range chains {
		if err := s.CheckChain(chain, now); err != nil {
			return err
		}
	}
	return nil
}

// Verify verifies leaf with opts (opts.CurrentTime is the time of the
// revocation check too; zero means now), maps a failure onto the pkicore
// sentinels with [pkicore.VerifyReason], and checks every chain found
// against s. The error names the certificate.
func Verify(leaf *x509.Certificate, opts x509.VerifyOptions, s *Set) ([][]*x509.Certificate, error) {
	if opts.CurrentTime.IsZero() {
		opts.CurrentTime = time.Now()
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return nil, fmt.Errorf("%q issued by %q: %w", leaf.Subject.String(), leaf.Issuer.String(), pkicore.VerifyReason(err))
	}
	if err := s.CheckChains(chains, opts.CurrentTime); err != nil {
		return nil, err
	}
	return chains, nil
}
