package rootca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"
)

// SignCRL signs an RFC 5280 v2 CRL of every revoked certificate that has
// not yet expired (with Options.InsecureAllowExpired, expired ones too,
// since such a CA still accepts them), in order of revocation. Its number
// comes from the store, so it increases across restarts and across
// processes sharing the store; its NextUpdate is Options.CRLValidity after
// ThisUpdate. Entries carry the revocation reason unless it is unspecified,
// as RFC 5280 recommends.
//
// The entries come from the CA's in-memory revocation set, brought up to
// date with the store first, so that revocations other processes sharing
// the store committed before the call are in the CRL.
//
// The returned list is parsed from the signed DER
// (x509.ParseRevocationList), so every field is set as a reader of the
// CRL sees it: Raw, RawTBSRevocationList, Signature, Issuer,
// AuthorityKeyId, Extensions and RevokedCertificateEntries with their
// Raw and Extensions.
//
// During a rotation SignCRL signs with the issuing CA, the successor;
// SignCRLs signs one CRL for every CA peers trust.
func (ca *CA) SignCRL(ctx context.Context) (*x509.RevocationList, error) {
	if err := ca.refreshGenerations(ctx); err != nil {
		return nil, err
	}
	return ca.signCRL(ctx, ca.auth.Load().current)
}

// SignCRLs signs a CRL, as SignCRL does, for every CA peers trust: the
// issuing CA's first, then during a rotation (see BeginRotation) the
// previous CA's, until it is retired. After a forced retirement no CRL is
// signed for the retired CA: peers no longer trust it at all.
//
// Each CRL lists every revocation of the store that SignCRL would. Serials
// are unique across the CAs of a store (one primary key holds the leaves
// of all of them), so an entry for a leaf another CA issued names no
// certificate of the CRL's issuer and revokes nothing there.
func (ca *CA) SignCRLs(ctx context.Context) ([]*x509.RevocationList, error) {
	if err := ca.refreshGenerations(ctx); err != nil {
		return nil, err
	}
	var out []*x509.RevocationList
	for _, g := range ca.auth.Load().trusted() {
		crl, err := ca.signCRL(ctx, g)
		if err != nil {
			return nil, err
		}
		out = append(out, crl)
	}
	return out, nil
}

// CRLs is SignCRLs, so that provider.CRLs returns a CRL for every CA
// peers trust during a rotation (provider.CRLSource); the issuing CA's
// comes first.
func (ca *CA) CRLs(ctx context.Context) ([]*x509.RevocationList, error) {
	return ca.SignCRLs(ctx)
}

// signCRL signs a CRL with generation g.
func (ca *CA) signCRL(ctx context.Context, g *generation) (*x509.RevocationList, error) {
	ca.crlMu.Lock()
	defer ca.crlMu.Unlock()

	// The number first, then the revocations: whatever a CRL with a
	// lower number held (signed by any server of the cluster) was
	// committed before that number was taken, so the catch-up below sees
	// it, and a later CRL never omits a revocation an earlier one lists.
	number, err := ca.store.NextCRLNumber(ctx)
	if err != nil {
		return nil, fmt.Errorf("rootca: CRL number: %w", err)
	}
	if err := ca.catchUp(ctx); err != nil {
		return nil, err
	}
	now := ca.opts.now().UTC().Truncate(time.Second)
	entries := ca.revoked.entries(now, ca.opts.InsecureAllowExpired)
	tmpl := &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                now.Add(ca.opts.crlValidity()),
		RevokedCertificateEntries: entries,
		SignatureAlgorithm:        g.sigAlg,
	}
	der, err := x509.CreateRevocationList(ca.opts.rand(), tmpl, g.cert, g.signer)
	if err != nil {
		return nil, fmt.Errorf("rootca: sign CRL: %w", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("rootca: parse the signed CRL: %w", err)
	}
	return crl, nil
}

// EncodeCRL returns a DER CRL as a PEM "X509 CRL" block, the form of
// libvirt's cacrl.pem and QEMU's ca-crl.pem.
func EncodeCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}
