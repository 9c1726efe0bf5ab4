package providertest_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

func (ca *toyCA) SignCRL(ctx context.Context) (*x509.RevocationList, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.crlNumber++
	if ca.flaws.staleCRLNumber {
		ca.crlNumber = 1
	}
	now := time.Now()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(ca.crlNumber),
		ThisUpdate: now,
		NextUpdate: now.Add(24 * time.Hour),
	}
	for _, rec := range ca.certs {
		if rec.revoked {
			tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
				SerialNumber:   rec.cert.SerialNumber,
				RevocationTime: rec.revokedAt,
				ReasonCode:     int(rec.reason),
			})
		}
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.issuer, ca.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseRevocationList(der)
}

func (ca *toyCA) VerifyPeer(ctx context.Context, req *provider.VerifyRequest) error {
	if ca.flaws.zeroUsageDefaults && req.Usage == provider.UsageUnspecified {
		req = &provider.VerifyRequest{Certificates: req.Certificates, Usage: provider.UsageClientAuth, Time: req.Time}
	}
	if err := req.Check(); err != nil {
		return err
	}
	if len(req.Certificates) == 0 {
		return &provider.VerifyError{Err: provider.ErrNoCertificate}
	}
	leaf := req.Certificates[0]
	refused := func(reason error, err error) error {
		if err != nil {
			reason = fmt.Errorf("%w: %w", reason, err)
		}
		return &provider.VerifyError{Subject: leaf.Subject.String(), Serial: leaf.SerialNumber, Err: reason}
	}
	usage, _ := req.Usage.ExtKeyUsage()
	at := req.Time
	if at.IsZero() {
		at = time.Now()
	}
	if ca.flaws.acceptExpired && at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	}
	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(ca.root)
	intermediates.AddCert(ca.issuer)
	for _, c := range req.Certificates[1:] {
		intermediates.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{usage},
		CurrentTime:   at,
	})
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return refused(provider.ErrExpired, err)
	case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
		return refused(provider.ErrIncompatibleUsage, err)
	case err != nil:
		return refused(provider.ErrUnknownAuthority, err)
	}
	if req.Usage == provider.UsageServerAuth {
		if err := leaf.VerifyHostname(req.ServerName); err != nil {
			return refused(provider.ErrNameMismatch, err)
		}
	}
	rec, ok := ca.lookup(leaf)
	if !ok {
		return refused(provider.ErrUnknownAuthority, errors.New("toy: not in the inventory"))
	}
	if rec.revoked && !ca.flaws.ignoreRevocation {
		return refused(&provider.RevokedError{Serial: leaf.SerialNumber, Reason: rec.reason, RevokedAt: rec.revokedAt}, nil)
	}
	return nil
}

func (ca *toyCA) Renew(ctx context.Context, req *provider.RenewRequest) (*provider.IssueResult, error) {
	if req == nil || req.Certificate == nil {
		return nil, refuse("certificate", "missing")
	}
	rec, ok := ca.lookup(req.Certificate)
	if !ok {
		return nil, &provider.RequestError{Field: "certificate", Reason: "not issued by this CA", Err: provider.ErrNotFound}
	}
	if rec.revoked {
		if ca.flaws.renewRevokedVague {
			return nil, errors.New("toy: cannot renew")
		}
		return nil, &provider.RequestError{Field: "certificate", Reason: "revoked",
			Err: &provider.RevokedError{Serial: rec.cert.SerialNumber, Reason: rec.reason, RevokedAt: rec.revokedAt}}
	}
	pub := rec.cert.PublicKey
	if req.CSR == nil && ca.flaws.acme {
		return nil, provider.Unsupported("csr", "this CA certifies a key only on a CSR signed with it")
	}
	if req.CSR != nil {
		csr, err := ca.checkCSR(req.CSR)
		if err != nil {
			return nil, err
		}
		pub = csr.PublicKey
	}
	old := rec.cert
	cert, err := ca.sign(pub, old.Subject.CommonName, old.DNSNames, old.IPAddresses, rec.role, req.Validity)
	if err != nil {
		return nil, err
	}
	return &provider.IssueResult{Certificate: cert, Chain: []*x509.Certificate{ca.issuer, ca.root}}, nil
}

func record(rec *toyRecord) *provider.CertificateRecord {
	c := rec.cert
	r := &provider.CertificateRecord{
		Serial:      c.SerialNumber,
		Subject:     c.Subject.String(),
		DNSNames:    c.DNSNames,
		IPAddresses: c.IPAddresses,
		NotBefore:   c.NotBefore,
		NotAfter:    c.NotAfter,
		Role:        rec.role,
		Raw:         c.Raw,
	}
	if rec.revoked {
		r.Status, r.RevokedAt, r.Reason = provider.StatusRevoked, rec.revokedAt, rec.reason
	}
	return r
}

func (ca *toyCA) LookupCertificate(ctx context.Context, serial *big.Int) (*provider.CertificateRecord, error) {
	if serial == nil {
		return nil, refuse("serial", "missing")
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	rec, ok := ca.certs[serial.Text(16)]
	if !ok {
		return nil, fmt.Errorf("toy: serial %s: %w", provider.FormatSerial(serial), provider.ErrNotFound)
	}
	return record(rec), nil
}

func (ca *toyCA) ListCertificates(ctx context.Context, opts *provider.ListOptions) ([]*provider.CertificateRecord, error) {
	if opts == nil {
		opts = &provider.ListOptions{}
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	var out []*provider.CertificateRecord
	for _, rec := range ca.certs {
		r := record(rec)
		if opts.Status != nil && r.Status != *opts.Status {
			continue
		}
		if !opts.ExpiringBefore.IsZero() && !r.NotAfter.Before(opts.ExpiringBefore) {
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *provider.CertificateRecord) int {
		if c := a.NotAfter.Compare(b.NotAfter); c != 0 {
			return c
		}
		return a.Serial.Cmp(b.Serial)
	})
	return out, nil
}

// acmeToy is a toyCA in acme mode seen as an ACME provider would be: its
// CRLs are fetched (a CRLSource, not a CRLSigner) and it keeps no
// inventory.
type acmeToy struct{ ca *toyCA }

var (
	_ provider.CRLSource    = acmeToy{}
	_ provider.PeerVerifier = acmeToy{}
	_ provider.Renewer      = acmeToy{}
)

func (a acmeToy) Name() string        { return "acme-toy" }
func (a acmeToy) Description() string { return "in-memory CA that behaves like an ACME CA" }
func (a acmeToy) Close() error        { return a.ca.Close() }

func (a acmeToy) CACertificates(ctx context.Context) ([]*x509.Certificate, error) {
	return a.ca.CACertificates(ctx)
}

func (a acmeToy) Issue(ctx context.Context, req *provider.IssueRequest) (*provider.IssueResult, error) {
	return a.ca.Issue(ctx, req)
}

func (a acmeToy) Revoke(ctx context.Context, req *provider.RevokeRequest) error {
	return a.ca.Revoke(ctx, req)
}

func (a acmeToy) VerifyPeer(ctx context.Context, req *provider.VerifyRequest) error {
	return a.ca.VerifyPeer(ctx, req)
}

func (a acmeToy) Renew(ctx context.Context, req *provider.RenewRequest) (*provider.IssueResult, error) {
	return a.ca.Renew(ctx, req)
}

// CRLs stands for downloading the CRL the CA published.
func (a acmeToy) CRLs(ctx context.Context) ([]*x509.RevocationList, error) {
	crl, err := a.ca.SignCRL(ctx)
	if err != nil {
		return nil, err
	}
	return []*x509.RevocationList{crl}, nil
}
