package peers

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// Purpose is the TLS role a certificate is verified for.
type Purpose int

const (
	// PurposeAny checks no extended key usage.
	PurposeAny Purpose = iota
	// PurposeServer verifies for TLS server authentication: OpenSSL
	// "sslserver", GnuTLS purpose 1.3.6.1.5.5.7.3.1.
	PurposeServer
	// PurposeClient verifies for TLS client authentication: OpenSSL
	// "sslclient", GnuTLS purpose 1.3.6.1.5.5.7.3.2.
	PurposeClient
)

// VerifyOptions tunes [OpenSSLVerify] and [CerttoolVerify].
type VerifyOptions struct {
	// Purpose is the role to verify for. The zero value checks none.
	Purpose Purpose
	// Hostname, if set, must match the leaf: a DNS name, or an IP address
	// (OpenSSL -verify_ip, GnuTLS matches IPs itself).
	Hostname string
	// Strict adds OpenSSL's -x509_strict, which rejects certificates that
	// OpenSSL otherwise tolerates (such as a CA without keyUsage). GnuTLS
	// has no equivalent; CerttoolVerify ignores it.
	Strict bool
}

// OpenSSLVerify runs `openssl verify` on the leaf of p.Cert against the
// trust anchors in p.CACert, with the rest of p.Cert as untrusted
// intermediates. If p.CRL is set it adds -crl_check with -CRLfile, which
// checks the revocation of the leaf only. p.Key is not used.
//
// The returned error holds OpenSSL's output, e.g. "error 23 at 0 depth
// lookup: certificate revoked".
func OpenSSLVerify(t testing.TB, p PKI, opts VerifyOptions) error {
	t.Helper()
	Require(t, "openssl")
	dir := t.TempDir()
	leaf, intermediates, err := p.leafAndIntermediates()
	if err != nil {
		return err
	}
	files := []fileSpec{{name: "ca.pem", data: p.CACert}, {name: "leaf.pem", data: leaf}}
	args := []string{"verify", "-CAfile", "ca.pem"}
	if len(intermediates) > 0 {
		files = append(files, fileSpec{name: "untrusted.pem", data: intermediates})
		args = append(args, "-untrusted", "untrusted.pem")
	}
	if len(p.CRL) > 0 {
		files = append(files, fileSpec{name: "crl.pem", data: p.pemCRL()})
		args = append(args, "-crl_check", "-CRLfile", "crl.pem")
	}
	switch opts.Purpose {
	case PurposeServer:
		args = append(args, "-purpose", "sslserver")
	case PurposeClient:
		args = append(args, "-purpose", "sslclient")
	}
	if opts.Hostname != "" {
		if net.ParseIP(opts.Hostname) != nil {
			args = append(args, "-verify_ip", opts.Hostname)
		} else {
			args = append(args, "-verify_hostname", opts.Hostname)
		}
	}
	if opts.Strict {
		args = append(args, "-x509_strict")
	}
	args = append(args, "leaf.pem")
	if err := writeFiles(dir, files...); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, dir, nil, "openssl", args...)
	if err != nil {
		return err
	}
	// openssl verify exits 0 only when every file verified; check the
	// verdict too, in case a future version changes exit codes.
	if !strings.Contains(out, "leaf.pem: OK") {
		return fmt.Errorf("peers: openssl verify did not report OK:\n%s", out)
	}
	return nil
}

// OpenSSLVerifyCRL runs `openssl crl -verify` on crl (PEM or DER) against
// the CA certificates in caCert. It fails when the CRL's signature does not
// verify with an issuer from caCert, or no issuer is found.
func OpenSSLVerifyCRL(t testing.TB, caCert, crl []byte) error {
	t.Helper()
	Require(t, "openssl")
	dir := t.TempDir()
	if err := writeFiles(dir,
		fileSpec{name: "ca.pem", data: caCert},
		fileSpec{name: "crl.pem", data: crlPEM(crl)},
	); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, dir, nil, "openssl", "crl", "-in", "crl.pem", "-inform", "PEM",
		"-CAfile", filepath.Join(dir, "ca.pem"), "-verify", "-noout")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "verify OK") {
		return fmt.Errorf("peers: openssl crl -verify did not report OK:\n%s", out)
	}
	return nil
}
