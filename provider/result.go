package provider

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// presented returns what a TLS peer holding r presents: the leaf, then the
// issuing CAs of Chain up to, but without, the self-signed root, which
// peers hold in their bundle already.
func (r *IssueResult) presented() ([]*x509.Certificate, error) {
	if r == nil || r.Certificate == nil {
		return nil, errors.New("provider: issue result holds no certificate")
	}
	certs := []*x509.Certificate{r.Certificate}
	for i, c := range r.Chain {
		if c == nil {
			return nil, fmt.Errorf("provider: issue result chain certificate %d is nil", i)
		}
		if isSelfSigned(c) {
			break
		}
		certs = append(certs, c)
	}
	return certs, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// TLSCertificate returns the result as a TLS identity: the leaf and its
// intermediate CAs (Chain without the root), with Leaf set and the
// generated private key. It fails when the result has no private key:
// when the request carried a CSR, set PrivateKey to the CSR's key first.
func (r *IssueResult) TLSCertificate() (tls.Certificate, error) {
	certs, err := r.presented()
	if err != nil {
		return tls.Certificate{}, err
	}
	if r.PrivateKey == nil {
		return tls.Certificate{}, errors.New("provider: issue result has no private key (the request carried a CSR)")
	}
	out := tls.Certificate{PrivateKey: r.PrivateKey, Leaf: r.Certificate}
	for _, c := range certs {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out, nil
}

// ChainPEM returns the leaf, then its intermediate CAs (Chain without the
// self-signed root), as PEM "CERTIFICATE" blocks: the content of a
// certificate file such as libvirt's servercert.pem. The CA bundle peers
// trust is [CABundle], not this.
func (r *IssueResult) ChainPEM() ([]byte, error) {
	certs, err := r.presented()
	if err != nil {
		return nil, err
	}
	return EncodeCertificates(certs...), nil
}

// KeyPEM returns the generated private key as a PEM "PRIVATE KEY" block
// (PKCS #8), the content of a key file such as libvirt's serverkey.pem;
// write it with mode 0600. It fails when the result has no private key
// (the request carried a CSR) or the key cannot be exported (a hardware
// key).
func (r *IssueResult) KeyPEM() ([]byte, error) {
	if r == nil || r.PrivateKey == nil {
		return nil, errors.New("provider: issue result has no private key (the request carried a CSR)")
	}
	der, err := x509.MarshalPKCS8PrivateKey(r.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("provider: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
