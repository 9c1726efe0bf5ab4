package providertest_test

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/provider/providertest"
)

// flawCases are toy CAs with a bug, or suite options with a mistake, that
// the suite must catch, and providers that lack features, whose checks the
// suite must skip rather than fail. Each runs in a child process, since a
// failing suite fails its test.
type flawCase struct {
	name  string
	flaws flaws
	// wrap turns the toy into the provider under test; nil uses it as
	// it is.
	wrap func(*toyCA) provider.Provider
	opts providertest.Options
	run  string   // the group to run; empty runs everything
	fail []string // the checks that must fail; none means the run passes
	// skipped, when non-nil, is exactly the set of checks the run must
	// skip.
	skipped []string
}

var flawCases = []flawCase{
	{name: "unchecked CSR signature", flaws: flaws{noCSRSignatureCheck: true}, run: "Refusals",
		fail: []string{"Refusals/BadCSRSignature", "Refusals/SHA1CSR"}},
	{name: "IP literal as DNS name", flaws: flaws{ipLiteralNames: true}, run: "Refusals",
		fail: []string{"Refusals/IPLiteralDNSName"}},
	{name: "revocation ignored", flaws: flaws{ignoreRevocation: true}, run: "VerifyPeer",
		fail: []string{"VerifyPeer/Revoked", "VerifyPeer/MutualTLS"}},
	{name: "expired accepted", flaws: flaws{acceptExpired: true}, run: "VerifyPeer",
		fail: []string{"VerifyPeer/Expired"}},
	{name: "zero usage defaults", flaws: flaws{zeroUsageDefaults: true}, run: "VerifyPeer",
		fail: []string{"VerifyPeer/BadRequest"}},
	{name: "revoked renewal refused vaguely", flaws: flaws{renewRevokedVague: true}, run: "Renew",
		fail: []string{"Renew/Revoked"}},
	{name: "no subject key identifier", flaws: flaws{noSKI: true}, run: "Issue",
		fail: []string{"Issue/host", "Issue/client", "Issue/server"}},
	{name: "stale CRL number", flaws: flaws{staleCRLNumber: true}, run: "CRL",
		fail: []string{"CRL/Number"}},
	{name: "flaw skipped", flaws: flaws{staleCRLNumber: true}, run: "CRL",
		opts: providertest.Options{Skip: map[string]string{"CRL/Number": "known"}}, skipped: []string{"CRL/Number"}},
	{name: "group skipped", flaws: flaws{noCSRSignatureCheck: true}, run: "Refusals",
		opts: providertest.Options{Skip: map[string]string{"Refusals": "known"}}, skipped: []string{"Refusals"}},
	{name: "misspelt skip", run: "Identity", opts: providertest.Options{Skip: map[string]string{"CRL/Numbr": "typo"}},
		fail: []string{""}},
	{name: "role not in Options.Roles", run: "Identity", opts: providertest.Options{Roles: []provider.Role{provider.RoleUnspecified}},
		fail: []string{""}},
	// A provider without optional capabilities: their groups skip, and
	// nothing else does.
	{name: "bare", wrap: func(ca *toyCA) provider.Provider { return bareProvider{ca} },
		opts:    providertest.Options{NoIPAddresses: true, NoKeyGeneration: true},
		skipped: []string{"CRL", "VerifyPeer", "Inventory", "Renew", "RevocationNotifier", "OCSPSigner", "RotationLeaser", "Issue/KeyTypes"}},
	// A provider shaped like Let's Encrypt: the options make the suite
	// run every check it can, and skip only what the CA cannot do.
	{name: "acme-like", flaws: flaws{acme: true}, wrap: func(ca *toyCA) provider.Provider { return acmeToy{ca} },
		opts: providertest.Options{
			Roles:           []provider.Role{provider.RoleServer},
			ExactCSRNames:   true,
			FixedValidity:   true,
			NoIPAddresses:   true,
			NoKeyGeneration: true,
		},
		skipped: []string{"Issue/host", "Issue/client", "Issue/KeyTypes", "Revoke/UnknownSerial",
			"CRL/Entry", "VerifyPeer/MutualTLS", "Inventory", "RevocationNotifier", "OCSPSigner", "RotationLeaser"}},
	// A rotation lease without compare-and-set: every claim wins.
	{name: "sloppy rotation lease", wrap: func(ca *toyCA) provider.Provider { return &sloppyLeaser{toyCA: ca} },
		run: "RotationLeaser", fail: []string{"RotationLeaser/Exclusive", "RotationLeaser/Concurrent"}},
	// A CA listing a second issuing CA before its own: each Chain
	// verifies to a root among CACertificates, without being a prefix
	// of them.
	{name: "several issuing CAs", flaws: flaws{severalIssuers: true}},
	// The same CA with the default options: the suite fails, loudly.
	{name: "acme-like without options", flaws: flaws{acme: true}, wrap: func(ca *toyCA) provider.Provider { return acmeToy{ca} },
		run: "Issue", fail: []string{"Issue/host", "Issue/client", "Issue/Validity"}},
}

const flawEnv = "PROVIDERTEST_FLAW"

// TestFlawsChild is the child process of TestFlaws.
func TestFlawsChild(t *testing.T) {
	name := os.Getenv(flawEnv)
	if name == "" {
		t.Skip("run by TestFlaws")
	}
	for _, tc := range flawCases {
		if tc.name == name {
			providertest.Run(t, func(t *testing.T) provider.Provider {
				ca, err := newToyCA(tc.flaws)
				require.NoError(t, err)
				if tc.wrap != nil {
					return tc.wrap(ca)
				}
				return ca
			}, &tc.opts)
			return
		}
	}
	t.Fatalf("no flaw case %q", name)
}

// TestFlaws proves that the suite finds the bugs it is meant to find,
// and skips what a provider without a feature cannot do.
func TestFlaws(t *testing.T) {
	for _, tc := range flawCases {
		if tc.name == "bare" {
			continue // TestRunBare
		}
		t.Run(tc.name, func(t *testing.T) { runFlawCase(t, tc.name) })
	}
}

// TestRunBare runs the suite against a provider without optional
// capabilities: exactly their groups (and the key types, with
// NoKeyGeneration) must skip, and everything else pass.
func TestRunBare(t *testing.T) { runFlawCase(t, "bare") }

// runFlawCase runs the suite on the flaw case called name in a child
// process and checks the checks that failed and were skipped.
func runFlawCase(t *testing.T, name string) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	i := slices.IndexFunc(flawCases, func(c flawCase) bool { return c.name == name })
	require.GreaterOrEqual(t, i, 0, "no flaw case %q", name)
	tc := flawCases[i]
	exe, err := os.Executable()
	require.NoError(t, err)
	run := "^TestFlawsChild$"
	if tc.run != "" {
		run += "/^" + tc.run + "$"
	}
	cmd := exec.CommandContext(t.Context(), exe, "-test.run="+run, "-test.v", "-test.count=1")
	// GORACE: a race-enabled child would otherwise sleep a second before
	// exiting.
	cmd.Env = append(os.Environ(), flawEnv+"="+tc.name, "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if tc.skipped != nil {
		assert.ElementsMatch(t, tc.skipped, skippedChecks(string(out)), "skipped checks:\n%s", out)
	}
	if len(tc.fail) == 0 {
		assert.NoError(t, err, "the suite must pass:\n%s", out)
		assert.Contains(t, string(out), "--- PASS: TestFlawsChild ", "the suite must have run")
		return
	}
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the suite must fail:\n%s", out)
	for _, check := range tc.fail {
		name := "TestFlawsChild"
		if check != "" {
			name += "/" + check
		}
		assert.Contains(t, string(out), "--- FAIL: "+name+" ", "check %q must fail", check)
	}
}

var skipLine = regexp.MustCompile(`(?m)^\s*--- SKIP: TestFlawsChild/(\S+) `)

// skippedChecks returns the checks that go test -v output reports as
// skipped.
func skippedChecks(out string) []string {
	var names []string
	for _, m := range skipLine.FindAllStringSubmatch(out, -1) {
		names = append(names, m[1])
	}
	return names
}
