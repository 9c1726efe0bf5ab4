package providertest_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/provider/providertest"
)

// flawCases are toy CAs with a bug, or suite options with a mistake, that
// the suite must catch. Each runs in a child process, since a failing
// suite fails its test.
var flawCases = []struct {
	name  string
	flaws flaws
	skip  map[string]string
	run   string   // the group to run; empty runs everything
	fail  []string // the checks that must fail; none means the run passes
}{
	{name: "unchecked CSR signature", flaws: flaws{noCSRSignatureCheck: true}, run: "Refusals",
		fail: []string{"Refusals/BadCSRSignature", "Refusals/SHA1CSR"}},
	{name: "revocation ignored", flaws: flaws{ignoreRevocation: true}, run: "VerifyPeer",
		fail: []string{"VerifyPeer/Revoked", "VerifyPeer/MutualTLS"}},
	{name: "expired accepted", flaws: flaws{acceptExpired: true}, run: "VerifyPeer",
		fail: []string{"VerifyPeer/Expired"}},
	{name: "no subject key identifier", flaws: flaws{noSKI: true}, run: "Issue",
		fail: []string{"Issue/host", "Issue/client", "Issue/server"}},
	{name: "stale CRL number", flaws: flaws{staleCRLNumber: true}, run: "CRL",
		fail: []string{"CRL/Number"}},
	{name: "flaw skipped", flaws: flaws{staleCRLNumber: true}, run: "CRL",
		skip: map[string]string{"CRL/Number": "known"}},
	{name: "group skipped", flaws: flaws{noCSRSignatureCheck: true}, run: "Refusals",
		skip: map[string]string{"Refusals": "known"}},
	{name: "misspelt skip", run: "Identity", skip: map[string]string{"CRL/Numbr": "typo"},
		fail: []string{""}},
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
				return ca
			}, &providertest.Options{Skip: tc.skip})
			return
		}
	}
	t.Fatalf("no flaw case %q", name)
}

// TestFlaws proves that the suite finds the bugs it is meant to find.
func TestFlaws(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	for _, tc := range flawCases {
		t.Run(tc.name, func(t *testing.T) {
			run := "^TestFlawsChild$"
			if tc.run != "" {
				run += "/^" + tc.run + "$"
			}
			cmd := exec.CommandContext(t.Context(), exe, "-test.run="+run, "-test.v", "-test.count=1")
			// GORACE: a race-enabled child would otherwise sleep a second
			// before exiting.
			cmd.Env = append(os.Environ(), flawEnv+"="+tc.name, "GORACE=atexit_sleep_ms=0")
			out, err := cmd.CombinedOutput()
			if len(tc.fail) == 0 {
				assert.NoError(t, err, "the suite must pass:\n%s", out)
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
		})
	}
}
