package rootca_test

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/kvmpki/kvmpki/provider"
)

// zlintSources are the lint sources that apply to a private CA
// (x509-profiles.md §8): the RFCs and the community lints. The CA/Browser
// Forum, root-program and ETSI lints are rules for the Web PKI. RFC 8813
// is added for e_ecdsa_allowed_ku, which refuses keyEncipherment on ECDSA
// keys: the usage libvirt 9.0 demands when a keyUsage extension is
// present, which is why rootca's ECDSA leaves carry none.
var zlintSources = lint.SourceList{
	lint.RFC5280,
	lint.RFC5480,
	lint.RFC3279,
	lint.RFC5891,
	lint.RFC8813,
	lint.Community,
}

// zlintExclusions names the lints of zlintSources that are excluded, each
// with the reason it is a false positive for this CA. Filter fails on an
// unknown name, so a renamed lint does not silently come back. None is
// needed with zlint v3.7.3; under the full registry only CA/Browser Forum
// (and Apple and Mozilla notice) lints fire, such as w_missing_key_usage
// on the ECDSA server leaves.
var zlintExclusions []string

// zlintRegistry returns the global registry filtered to zlintSources
// without zlintExclusions.
func zlintRegistry(t testing.TB) lint.Registry {
	t.Helper()
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: zlintSources, ExcludeNames: zlintExclusions})
	require.NoError(t, err)
	require.NotEmpty(t, reg.CertificateLints().Lints(), "no certificate lint in the registry")
	require.NotEmpty(t, reg.RevocationListLints().Lints(), "no CRL lint in the registry")
	return reg
}

// TestZlint lints every certificate profile and CRL of the interop matrix:
// each CA certificate (ECDSA P-256 root, RSA-3072 root, ECDSA P-384
// offline root, ECDSA P-256 intermediate), every leaf role for every key,
// and each CA's CRL. Any warning, error or fatal fails the test.
func TestZlint(t *testing.T) {
	f := getInteropFixture(t)
	reg := zlintRegistry(t)
	for _, s := range f.setups {
		t.Run(s.name, func(t *testing.T) {
			t.Run("root", func(t *testing.T) { lintCertificate(t, reg, s.root.Raw) })
			if s.inter != nil {
				t.Run("intermediate", func(t *testing.T) { lintCertificate(t, reg, s.inter.Raw) })
			}
			for _, l := range s.leaves {
				t.Run(l.name(), func(t *testing.T) { lintCertificate(t, reg, l.cert.Raw) })
			}
			t.Run("CRL", func(t *testing.T) {
				crl, err := zx509.ParseRevocationList(s.crl.Raw)
				require.NoError(t, err)
				assertLintClean(t, zlint.LintRevocationListEx(crl, reg))
			})
		})
	}
}

func lintCertificate(t *testing.T, reg lint.Registry, der []byte) {
	t.Helper()
	c, err := zx509.ParseCertificate(der)
	require.NoError(t, err)
	assertLintClean(t, zlint.LintCertificateEx(c, reg))
}

// assertLintClean fails when a lint reports a warning, an error or a
// fatal, naming each with its details. Notices pass: the only one here is
// n_san_iana_pub_suffix_empty, for the test's DNS:localhost.
func assertLintClean(t *testing.T, rs *zlint.ResultSet) {
	t.Helper()
	findings, passed := lintFindings(rs)
	assert.Empty(t, findings, "zlint findings")
	assert.Positive(t, passed, "no lint applied")
}

// lintFindings returns the results of rs at warning level or above as
// "name: status details", sorted, and the number of lints that passed.
func lintFindings(rs *zlint.ResultSet) (findings []string, passed int) {
	if rs == nil {
		return []string{"no result set"}, 0
	}
	for name, r := range rs.Results {
		switch {
		case r.Status >= lint.Warn:
			findings = append(findings, fmt.Sprintf("%s: %s %s", name, r.Status, r.Details))
		case r.Status == lint.Pass:
			passed++
		}
	}
	slices.Sort(findings)
	return findings, passed
}

// TestZlintHarness checks that the filtered registry catches the defects
// rootca's profiles avoid, in leaves made from naive templates: a
// client-only RSA leaf with keyEncipherment and no subject key
// identifier, and an ECDSA host leaf with keyEncipherment.
func TestZlintHarness(t *testing.T) {
	reg := zlintRegistry(t)
	s := getInteropFixture(t).setups[0]
	tests := []struct {
		name string
		key  crypto.Signer
		eku  []x509.ExtKeyUsage
		want []string
	}{
		{
			name: "RSA client with keyEncipherment, no SKI",
			key:  s.leaf("rsa2048", provider.RoleClient).key,
			eku:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			want: []string{"e_key_usage_and_extended_key_usage_inconsistent", "w_ext_subject_key_identifier_missing_sub_cert"},
		},
		{
			name: "ECDSA host with keyEncipherment",
			key:  s.leaf("p256", provider.RoleHost).key,
			eku:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			want: []string{"e_ecdsa_allowed_ku"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
				SerialNumber:          big.NewInt(now.UnixNano()),
				Subject:               pkix.Name{CommonName: "naive.kvmpki.test"},
				DNSNames:              []string{"naive.kvmpki.test"},
				NotBefore:             now.Add(-time.Hour),
				NotAfter:              now.Add(time.Hour),
				KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
				ExtKeyUsage:           tc.eku,
				BasicConstraintsValid: true,
			}, s.root, tc.key.Public(), s.caKey)
			require.NoError(t, err)
			c, err := zx509.ParseCertificate(der)
			require.NoError(t, err)
			findings, _ := lintFindings(zlint.LintCertificateEx(c, reg))
			var names []string
			for _, f := range findings {
				names = append(names, strings.SplitN(f, ":", 2)[0])
			}
			assert.Subset(t, names, tc.want, "findings: %v", findings)
		})
	}
}
