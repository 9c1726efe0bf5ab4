package revocation

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// TestShardedCRLs: a CA that partitions its CRL (Let's Encrypt's shards,
// provider.CRLSource) gives several CRLs of one issuer; a serial on any
// of them is revoked, and one on none is not.
func TestShardedCRLs(t *testing.T) {
	root := mint(t, "root", nil, true)
	inter := mint(t, "intermediate", root, true)
	first, second, clean := mint(t, "kvm1", inter, false), mint(t, "kvm2", inter, false), mint(t, "kvm3", inter, false)
	this, next, past := now.Add(-time.Hour), now.Add(time.Hour), now.Add(-time.Minute)
	shards := []*x509.RevocationList{
		inter.crl(t, this, next, past, first.cert),
		inter.crl(t, this, next, past, second.cert),
	}
	s, err := NewSet(shards, []*x509.Certificate{inter.cert, root.cert}, now)
	require.NoError(t, err)
	assert.Equal(t, 2, s.Len())
	tests := []struct {
		name    string
		leaf    *x509.Certificate
		revoked bool
	}{
		{name: "on the first shard", leaf: first.cert, revoked: true},
		{name: "on the second shard", leaf: second.cert, revoked: true},
		{name: "on none", leaf: clean.cert},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.CheckChain([]*x509.Certificate{tc.leaf, inter.cert, root.cert}, now)
			if tc.revoked {
				assert.ErrorIs(t, err, pkicore.ErrRevoked)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}
