package provider

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// MaxCSRSize bounds the CSR a provider parses. A CSR with a 16384-bit RSA
// key and a hundred names stays far below it.
const MaxCSRSize = 64 << 10

// ParseCSR parses a PKCS #10 certificate request, PEM ("CERTIFICATE
// REQUEST" or "NEW CERTIFICATE REQUEST", as keytool writes it) or DER. It
// does not check the signature. Beware that
// x509.CertificateRequest.CheckSignature accepts SHA-1 signatures: refuse
// them by SignatureAlgorithm first.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) == 0 {
		return nil, &RequestError{Field: "csr", Reason: "empty"}
	}
	if len(data) > MaxCSRSize {
		return nil, &RequestError{Field: "csr", Reason: fmt.Sprintf("%d bytes exceeds the limit of %d", len(data), MaxCSRSize)}
	}
	der := data
	switch {
	case bytes.Contains(data, []byte("-----BEGIN ")):
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, &RequestError{Field: "csr", Reason: "malformed PEM"}
		}
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, &RequestError{Field: "csr", Reason: fmt.Sprintf("PEM block type %q, want CERTIFICATE REQUEST", block.Type)}
		}
		der = block.Bytes
	case data[0] != 0x30: // not a DER SEQUENCE
		return nil, &RequestError{Field: "csr", Reason: "neither PEM nor DER"}
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, &RequestError{Field: "csr", Reason: "malformed", Err: err}
	}
	return csr, nil
}
