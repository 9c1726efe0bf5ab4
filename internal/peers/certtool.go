package peers

import (
	"fmt"
	"strings"
	"testing"
)

// GnuTLS purpose OIDs for certtool --verify-purpose.
const (
	oidServerAuth = "1.3.6.1.5.5.7.3.1"
	oidClientAuth = "1.3.6.1.5.5.7.3.2"
)

// CerttoolVerify runs GnuTLS `certtool --verify` on the chain p.Cert (leaf
// first) against the trust anchors in p.CACert, loading p.CRL with
// --load-crl when set. opts.Purpose maps to --verify-purpose and
// opts.Hostname to --verify-hostname; opts.Strict is ignored. p.Key is not
// used.
//
// GnuTLS is the library libvirt and QEMU verify with, so this is the
// cheapest check of what they will accept. certtool 3.7.9 exits 1 on
// failure and ends its report with "Chain verification output: Not
// verified. …" plus the reason; the returned error holds that report.
func CerttoolVerify(t testing.TB, p PKI, opts VerifyOptions) error {
	t.Helper()
	Require(t, "certtool")
	dir := t.TempDir()
	if _, err := p.chain(); err != nil {
		return err
	}
	files := []fileSpec{{name: "ca.pem", data: p.CACert}, {name: "chain.pem", data: p.Cert}}
	args := []string{"--verify", "--load-ca-certificate", "ca.pem", "--infile", "chain.pem"}
	if len(p.CRL) > 0 {
		files = append(files, fileSpec{name: "crl.pem", data: p.pemCRL()})
		args = append(args, "--load-crl", "crl.pem")
	}
	switch opts.Purpose {
	case PurposeServer:
		args = append(args, "--verify-purpose="+oidServerAuth)
	case PurposeClient:
		args = append(args, "--verify-purpose="+oidClientAuth)
	}
	if opts.Hostname != "" {
		args = append(args, "--verify-hostname="+opts.Hostname)
	}
	if err := writeFiles(dir, files...); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, dir, nil, "certtool", args...)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "Chain verification output: Verified.") {
		return fmt.Errorf("peers: certtool --verify did not report the chain verified:\n%s", out)
	}
	return nil
}
