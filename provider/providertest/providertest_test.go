package providertest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/provider/providertest"
)

func newToy(t *testing.T) provider.Provider {
	ca, err := newToyCA(flaws{})
	require.NoError(t, err)
	return ca
}

// TestRun runs the suite against an honest provider with every
// capability, a fresh one per group.
func TestRun(t *testing.T) {
	providertest.Run(t, newToy, nil)
}

// TestRunShared runs the suite against one provider shared by every group,
// as a slow provider would, with RSA keys among the generated ones.
func TestRunShared(t *testing.T) {
	shared := newToy(t)
	providertest.Run(t, func(*testing.T) provider.Provider { return shared }, &providertest.Options{
		Domain: "kvm.example.test",
		KeyTypes: []providertest.KeyType{
			{Algorithm: provider.KeyAlgorithmECDSA, Size: 384},
			{Algorithm: provider.KeyAlgorithmRSA, Size: 2048},
		},
	})
}

// bareProvider hides every optional capability of the provider it wraps.
type bareProvider struct{ provider.Provider }
