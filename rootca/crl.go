package rootca

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
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
// The returned list is filled from the signing input, not re-parsed: Raw
// is the DER CRL, and every field but Extensions is set. Re-parsing a CRL
// of 100,000 entries would cost a quarter of the signing time.
func (ca *CA) SignCRL(ctx context.Context) (*x509.RevocationList, error) {
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
		SignatureAlgorithm:        ca.sigAlg,
	}
	der, err := x509.CreateRevocationList(ca.opts.rand(), tmpl, ca.cert, ca.signer)
	if err != nil {
		return nil, fmt.Errorf("rootca: sign CRL: %w", err)
	}
	if err := fillSignedCRL(tmpl, der); err != nil {
		return nil, err
	}
	tmpl.Issuer = ca.cert.Subject
	tmpl.RawIssuer = ca.cert.RawSubject
	tmpl.AuthorityKeyId = ca.cert.SubjectKeyId
	return tmpl, nil
}

// fillSignedCRL sets the raw fields of crl from its DER encoding.
func fillSignedCRL(crl *x509.RevocationList, der []byte) error {
	input := cryptobyte.String(der)
	var list, tbs cryptobyte.String
	var sigAlg cryptobyte.String
	var sig asn1.BitString
	if !input.ReadASN1(&list, cbasn1.SEQUENCE) ||
		!list.ReadASN1Element(&tbs, cbasn1.SEQUENCE) ||
		!list.ReadASN1(&sigAlg, cbasn1.SEQUENCE) ||
		!list.ReadASN1BitString(&sig) {
		return fmt.Errorf("rootca: signed CRL is malformed")
	}
	crl.Raw = der
	crl.RawTBSRevocationList = tbs
	crl.Signature = sig.RightAlign()
	return nil
}

// EncodeCRL returns a DER CRL as a PEM "X509 CRL" block, the form of
// libvirt's cacrl.pem and QEMU's ca-crl.pem.
func EncodeCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}
