package rootca

import (
	"bytes"
	"context"
	"crypto"
	"errors"

	"github.com/kvmpki/kvmpki/provider"
)

// Renew issues a successor of a certificate this CA issued: same common
// name, names and role, a new serial and validity, and the same public key
// unless req.CSR brings a new one (whose own names are ignored: a renewal
// does not widen a certificate). The predecessor stays valid until it
// expires or is revoked. Renewing a revoked or unknown certificate is
// refused.
func (ca *CA) Renew(ctx context.Context, req *provider.RenewRequest) (*provider.IssueResult, error) {
	if req == nil || req.Certificate == nil {
		return nil, &provider.RequestError{Field: "certificate", Reason: "missing"}
	}
	old := req.Certificate
	if err := checkSerial(old.SerialNumber); err != nil {
		return nil, err
	}
	rec, err := ca.store.Certificate(ctx, old.SerialNumber)
	if err != nil {
		if errors.Is(err, provider.ErrNotFound) {
			return nil, &provider.RequestError{Field: "certificate", Reason: "not issued by this CA", Err: err}
		}
		return nil, err
	}
	if !bytes.Equal(rec.Raw, old.Raw) {
		return nil, &provider.RequestError{Field: "certificate", Reason: "not issued by this CA (serial matches another certificate)"}
	}
	if rec.Status == provider.StatusRevoked {
		return nil, &provider.RequestError{Field: "certificate", Reason: "revoked", Err: provider.ErrRevoked}
	}
	var pub crypto.PublicKey = old.PublicKey
	if req.CSR != nil {
		csr, err := ca.checkCSR(req.CSR)
		if err != nil {
			return nil, err
		}
		pub = csr.PublicKey
	}
	names := newNameSet(ca.opts.maxNames())
	names.commonName = old.Subject.CommonName
	for _, n := range old.DNSNames {
		if err := names.addDNS("dns", n); err != nil {
			return nil, err
		}
	}
	for _, ip := range old.IPAddresses {
		if err := names.addIP("ip", ip); err != nil {
			return nil, err
		}
	}
	cert, chain, err := ca.sign(ctx, pub, names, rec.Role, req.Validity, req.MaxValidity)
	if err != nil {
		return nil, err
	}
	return &provider.IssueResult{Certificate: cert, Chain: chain}, nil
}
