package peers

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// PKI is one party's view of a PKI, as PEM bytes: what it trusts and who it
// is. Which fields a helper needs is documented on the helper.
type PKI struct {
	// CACert holds the trusted CA certificates (one or more PEM
	// "CERTIFICATE" blocks).
	CACert []byte
	// Cert is the party's certificate chain: the leaf first, then any
	// intermediates, as PEM "CERTIFICATE" blocks.
	Cert []byte
	// Key is the private key of the leaf in Cert, as a PEM "PRIVATE KEY"
	// (PKCS #8), "EC PRIVATE KEY" (SEC 1) or "RSA PRIVATE KEY" (PKCS #1)
	// block. It is only ever written to files with mode 0600.
	Key []byte
	// CRL is an optional certificate revocation list, PEM ("X509 CRL") or
	// DER. If nil, no revocation list is loaded.
	CRL []byte
}

// ClientTLSConfig returns a crypto/tls client configuration that trusts
// p.CACert, presents p.Cert and p.Key when both are set, and verifies the
// server's name against serverName.
func (p PKI) ClientTLSConfig(serverName string) (*tls.Config, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.CACert) {
		return nil, errors.New("peers: CACert holds no PEM certificate")
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: serverName}
	if len(p.Cert) > 0 || len(p.Key) > 0 {
		cert, err := p.tlsCertificate()
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// tlsCertificate returns p.Cert and p.Key as a tls.Certificate.
func (p PKI) tlsCertificate() (tls.Certificate, error) {
	keyDER, err := p.pkcs8Key()
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(p.Cert, keyPEM)
	clear(keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("peers: loading Cert and Key: %w", err)
	}
	return cert, nil
}

// chain returns the DER certificates of p.Cert, leaf first.
func (p PKI) chain() ([][]byte, error) {
	var ders [][]byte
	rest := p.Cert
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			ders = append(ders, b.Bytes)
		}
	}
	if len(ders) == 0 {
		return nil, errors.New("peers: Cert holds no PEM certificate")
	}
	return ders, nil
}

// leafAndIntermediates splits p.Cert into the PEM leaf and the PEM
// intermediates (nil when there are none).
func (p PKI) leafAndIntermediates() (leaf, intermediates []byte, err error) {
	ders, err := p.chain()
	if err != nil {
		return nil, nil, err
	}
	leaf = pemCert(ders[0])
	for _, der := range ders[1:] {
		intermediates = append(intermediates, pemCert(der)...)
	}
	return leaf, intermediates, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// pkcs8Key returns p.Key as PKCS #8 DER, whatever PEM form it came in.
func (p PKI) pkcs8Key() ([]byte, error) {
	rest := p.Key
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("peers: Key holds no PEM private key")
		}
		switch b.Type {
		case "PRIVATE KEY":
			if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
				return nil, fmt.Errorf("peers: parsing PRIVATE KEY block: %w", err)
			}
			return bytes.Clone(b.Bytes), nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("peers: parsing EC PRIVATE KEY block: %w", err)
			}
			return x509.MarshalPKCS8PrivateKey(k)
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("peers: parsing RSA PRIVATE KEY block: %w", err)
			}
			return x509.MarshalPKCS8PrivateKey(k)
		}
	}
}

// pemKey returns p.Key as a PEM "PRIVATE KEY" block.
func (p PKI) pemKey() ([]byte, error) {
	der, err := p.pkcs8Key()
	if err != nil {
		return nil, err
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// pemCRL returns p.CRL as PEM, converting DER.
func (p PKI) pemCRL() []byte {
	return crlPEM(p.CRL)
}

// crlPEM returns crl as PEM: PEM input is returned as is, anything else is
// taken as DER.
func crlPEM(crl []byte) []byte {
	if len(crl) == 0 {
		return nil
	}
	if bytes.Contains(crl, []byte("-----BEGIN")) {
		return crl
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})
}

// layout names the files a peer reads a PKI from; an empty name, or a
// part the PKI lacks, is not written.
type layout struct{ ca, cert, key, crl string }

var (
	libvirtServerLayout = layout{ca: "cacert.pem", cert: "servercert.pem", key: "serverkey.pem", crl: "cacrl.pem"}
	libvirtClientLayout = layout{ca: "cacert.pem", cert: "clientcert.pem", key: "clientkey.pem", crl: "cacrl.pem"}
	qemuServerLayout    = layout{ca: "ca-cert.pem", cert: "server-cert.pem", key: "server-key.pem", crl: "ca-crl.pem"}
)

// writeLayout writes p into dir, which must exist, under l's names, with
// the key 0600, followed by extra. An unreadable key is returned as an
// error; a file that cannot be written fails the test.
func (p PKI) writeLayout(t testing.TB, dir string, l layout, extra ...fileSpec) error {
	t.Helper()
	var files []fileSpec
	add := func(name string, data []byte, secret bool) {
		if name != "" && len(data) > 0 {
			files = append(files, fileSpec{name: name, data: data, secret: secret})
		}
	}
	add(l.ca, p.CACert, false)
	add(l.cert, p.Cert, false)
	if len(p.Key) > 0 && l.key != "" {
		key, err := p.pemKey()
		if err != nil {
			return err
		}
		defer clear(key)
		add(l.key, key, true)
	}
	if len(p.CRL) > 0 {
		add(l.crl, p.pemCRL(), false)
	}
	if err := writeFiles(dir, append(files, extra...)...); err != nil {
		t.Fatal(err)
	}
	return nil
}

// fileSpec is one file to write for a peer.
type fileSpec struct {
	name   string
	data   []byte
	secret bool // a private key: mode 0600
}

// writeFiles writes files into dir, which must exist. Secret files get
// mode 0600, the others 0644; no file may exist already.
func writeFiles(dir string, files ...fileSpec) error {
	for _, f := range files {
		perm := os.FileMode(0o644)
		if f.secret {
			perm = 0o600
		}
		if err := writeNew(filepath.Join(dir, f.name), f.data, perm); err != nil {
			return err
		}
	}
	return nil
}

// writeNew creates path with perm, failing if it exists.
func writeNew(path string, data []byte, perm os.FileMode) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	_, err = fh.Write(data)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("peers: writing %s: %w", path, err)
	}
	return nil
}
