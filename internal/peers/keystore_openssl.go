package peers

import (
	"fmt"
	"strings"
	"testing"
)

// OpenSSLReqVerify runs `openssl req -verify -text -noout` on a PEM
// PKCS #10 request, which checks the request's self-signature, and
// returns OpenSSL's output (the request printed as text). An error holds
// OpenSSL's output.
func OpenSSLReqVerify(t testing.TB, csrPEM []byte) (string, error) {
	t.Helper()
	Require(t, "openssl")
	dir := t.TempDir()
	if err := writeFiles(dir, fileSpec{name: "req.pem", data: csrPEM}); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, dir, nil, "openssl", "req", "-in", "req.pem", "-verify", "-text", "-noout")
	if err != nil {
		return out, err
	}
	// OpenSSL 3.0 prints "Certificate request self-signature verify OK"
	// (older: "verify OK").
	if !strings.Contains(out, "verify OK") {
		return out, fmt.Errorf("peers: openssl req -verify did not report OK:\n%s", out)
	}
	return out, nil
}
