package rootca_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/provider/providertest"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// TestConformance runs the provider contract suite against the root CA:
// once on a shared CA kept in memory with each key type it generates, and
// once on a fresh SQLite-backed CA per check group.
func TestConformance(t *testing.T) {
	keyTypes := []providertest.KeyType{
		{Algorithm: provider.KeyAlgorithmECDSA, Size: 256},
		{Algorithm: provider.KeyAlgorithmECDSA, Size: 384},
		{Algorithm: provider.KeyAlgorithmRSA, Size: 2048},
	}
	t.Run("memory", func(t *testing.T) {
		// One CA for every group, closed when the last is done (a CA
		// made in the first group would be closed at its end).
		ca, _ := newCA(t, nil)
		providertest.Run(t, func(t *testing.T) provider.Provider { return ca }, &providertest.Options{KeyTypes: keyTypes})
	})
	t.Run("sqlite-intermediate", func(t *testing.T) {
		root, rootKey, err := rootca.NewRoot(nil)
		require.NoError(t, err)
		providertest.Run(t, func(t *testing.T) provider.Provider {
			store, err := sqlite.OpenDir(context.Background(), t.TempDir())
			require.NoError(t, err)
			t.Cleanup(func() { store.Close() })
			ca, err := rootca.Create(context.Background(), store, &rootca.CreateOptions{
				Options: rootca.Options{Signer: genKey(t, "p256")},
				Parent:  &rootca.Issuer{Certificate: root, Signer: rootKey},
			})
			require.NoError(t, err)
			t.Cleanup(func() { ca.Close() })
			return ca
		}, nil)
	})
}
