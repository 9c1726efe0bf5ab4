package ca

import (
	"crypto/x509/pkix"
	"encoding/asn1"
)

// subjectPublicKeyBits returns the subjectPublicKey BIT STRING contents of
// a DER SubjectPublicKeyInfo, what OCSP's issuerKeyHash hashes.
func subjectPublicKeyBits(spki []byte) ([]byte, bool) {
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	rest, err := asn1.Unmarshal(spki, &info)
	if err != nil || len(rest) != 0 {
		return nil, false
	}
	return info.PublicKey.RightAlign(), true
}
