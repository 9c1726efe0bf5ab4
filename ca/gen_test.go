package ca_test

import (
	"flag"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/provider"
)

var update = flag.Bool("update", false, "rewrite testdata seeds")

// TestOCSPSeeds writes testdata/ocsp-*.der, the fuzz seeds, with -update.
func TestOCSPSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the seeds")
	}
	e := newEnv(t, nil)
	res, _ := e.issue(t, provider.RoleHost, []string{"h.example"}, nil)
	der, err := ocsp.CreateRequest(res.Certificate, e.caCert, nil)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile("testdata/ocsp-sha1.der", der, 0o644))
	other := newEnv(t, nil)
	der, err = ocsp.CreateRequest(res.Certificate, other.caCert, nil)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile("testdata/ocsp-foreign.der", der, 0o644))
}
