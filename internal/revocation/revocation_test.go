package revocation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/pemx"
	"github.com/kvmpki/kvmpki/internal/pkicore"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// testdataNow is a time within the validity of testdata's CRL.
var testdataNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

// mint issues a certificate for cn from parent (self-signed when nil).
func mint(t *testing.T, cn string, parent *ca, isCA bool) *ca {
	t.Helper()
	key := newKey(t)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		tmpl.ExtKeyUsage = nil
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &ca{cert: c, key: key}
}

// crl signs a CRL revoking certs at revokedAt.
func (c *ca) crl(t *testing.T, this, next time.Time, revokedAt time.Time, certs ...*x509.Certificate) *x509.RevocationList {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, r := range certs {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: r.SerialNumber, RevocationTime: revokedAt})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: this, NextUpdate: next, RevokedCertificateEntries: entries,
	}, c.cert, c.key)
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	return crl
}

func TestNewSet(t *testing.T) {
	root := mint(t, "root", nil, true)
	twin := mint(t, "root", nil, true) // same name, another key
	tests := []struct {
		name string
		crl  *x509.RevocationList
		cas  []*x509.Certificate
		msg  string
	}{
		{name: "current", crl: root.crl(t, now.Add(-time.Hour), now.Add(time.Hour), now), cas: []*x509.Certificate{root.cert}},
		{name: "signed by a same-name CA not in the CA file", crl: twin.crl(t, now.Add(-time.Hour), now.Add(time.Hour), now),
			cas: []*x509.Certificate{root.cert}, msg: "not signed by a CA of the CA file"},
		{name: "not yet valid", crl: root.crl(t, now.Add(time.Minute), now.Add(time.Hour), now), cas: []*x509.Certificate{root.cert}, msg: "not valid before"},
		{name: "stale", crl: root.crl(t, now.Add(-2*time.Hour), now.Add(-time.Hour), now), cas: []*x509.Certificate{root.cert}, msg: "stale"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSet([]*x509.RevocationList{tc.crl}, tc.cas, now)
			if tc.msg != "" {
				assert.ErrorIs(t, err, ErrInvalidCRL)
				assert.ErrorContains(t, err, tc.msg)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, 1, s.Len())
		})
	}
}

func TestCheckChain(t *testing.T) {
	root := mint(t, "root", nil, true)
	twin := mint(t, "root", nil, true)
	inter := mint(t, "intermediate", root, true)
	leaf := mint(t, "kvm1", inter, false)
	direct := mint(t, "kvm2", root, false)
	// A twin-issued certificate with the same serial as direct's.
	serial--
	clash := mint(t, "kvm2-twin", twin, false)
	require.Equal(t, direct.cert.SerialNumber, clash.cert.SerialNumber)

	past, future := now.Add(-time.Minute), now.Add(time.Minute)
	this, next := now.Add(-time.Hour), now.Add(time.Hour)
	tests := []struct {
		name    string
		crls    []*x509.RevocationList
		chain   []*x509.Certificate
		revoked bool
	}{
		{name: "leaf on its issuer's CRL", crls: []*x509.RevocationList{inter.crl(t, this, next, past, leaf.cert)},
			chain: []*x509.Certificate{leaf.cert, inter.cert, root.cert}, revoked: true},
		{name: "intermediate on the root's CRL", crls: []*x509.RevocationList{root.crl(t, this, next, past, inter.cert)},
			chain: []*x509.Certificate{leaf.cert, inter.cert, root.cert}, revoked: true},
		{name: "revocation dated in the future", crls: []*x509.RevocationList{inter.crl(t, this, next, future, leaf.cert)},
			chain: []*x509.Certificate{leaf.cert, inter.cert, root.cert}},
		{name: "same serial on a same-name CA's CRL", crls: []*x509.RevocationList{twin.crl(t, this, next, past, clash.cert)},
			chain: []*x509.Certificate{direct.cert, root.cert}},
		{name: "CRL of another issuer in the chain", crls: []*x509.RevocationList{root.crl(t, this, next, past, leaf.cert)},
			chain: []*x509.Certificate{leaf.cert, inter.cert, root.cert}},
		{name: "nothing revoked", crls: []*x509.RevocationList{root.crl(t, this, next, past)},
			chain: []*x509.Certificate{direct.cert, root.cert}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSet(tc.crls, []*x509.Certificate{root.cert, twin.cert, inter.cert}, now)
			require.NoError(t, err)
			err = s.CheckChain(tc.chain, now)
			if tc.revoked {
				assert.ErrorIs(t, err, pkicore.ErrRevoked)
				return
			}
			assert.NoError(t, err)
		})
	}
	var none *Set
	assert.NoError(t, none.CheckChain([]*x509.Certificate{leaf.cert, inter.cert}, now), "a nil set revokes nothing")
	assert.Zero(t, none.Len())
}

func TestVerify(t *testing.T) {
	root := mint(t, "root", nil, true)
	other := mint(t, "other", nil, true)
	leaf := mint(t, "kvm1", root, false)
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	s, err := NewSet([]*x509.RevocationList{root.crl(t, now.Add(-time.Hour), now.Add(3*time.Hour), now, leaf.cert)}, []*x509.Certificate{root.cert}, now)
	require.NoError(t, err)
	opts := func(at time.Time) x509.VerifyOptions {
		return x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	}
	tests := []struct {
		name string
		leaf *x509.Certificate
		opts x509.VerifyOptions
		set  *Set
		want error
	}{
		{name: "valid", leaf: leaf.cert, opts: opts(now)},
		{name: "revoked", leaf: leaf.cert, opts: opts(now.Add(time.Minute)), set: s, want: pkicore.ErrRevoked},
		{name: "expired", leaf: leaf.cert, opts: opts(now.Add(2 * time.Hour)), set: s, want: pkicore.ErrExpired},
		{name: "unknown CA", leaf: mint(t, "kvm9", other, false).cert, opts: opts(now), want: pkicore.ErrUnknownAuthority},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chains, err := Verify(tc.leaf, tc.opts, tc.set)
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			assert.NotEmpty(t, chains)
		})
	}
}

func testdataCA(t testing.TB) []*x509.Certificate {
	b, err := os.ReadFile(filepath.Join("testdata", "ca.pem"))
	require.NoError(t, err)
	cas, err := pemx.ParseCertificates(b)
	require.NoError(t, err)
	return cas
}

func TestParse(t *testing.T) {
	cas := testdataCA(t)
	for _, name := range []string{"crl.pem", "crl.der"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", name))
			require.NoError(t, err)
			s, err := Parse(b, cas, testdataNow)
			require.NoError(t, err)
			assert.Equal(t, 1, s.Len())
			assert.Len(t, s.CRLs(), 1)
		})
	}
	s, err := Parse(nil, cas, now)
	require.NoError(t, err)
	assert.Zero(t, s.Len())
	_, err = Parse([]byte("junk"), cas, now)
	assert.ErrorIs(t, err, ErrInvalidCRL)
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"crl.pem", "crl.der", "ca.pem"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		require.NoError(f, err)
		f.Add(b)
	}
	cas := testdataCA(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, cas, testdataNow)
		if err != nil {
			return
		}
		for _, crl := range s.CRLs() {
			if crl.CheckSignatureFrom(cas[0]) != nil {
				t.Fatal("a CRL whose signature does not verify was accepted")
			}
		}
		_ = s.CheckChain(cas, now)
	})
}
