package rootca_test

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

func TestCreateThenOpen(t *testing.T) {
	ctx := context.Background()
	store := rootca.NewMemStore()
	subject, err := rootca.ParseDN("CN=ca.cloudstack.apache.org")
	require.NoError(t, err)
	opts := &rootca.CreateOptions{Options: rootca.Options{Password: passwordFunc}, Subject: subject,
		KeyAlgorithm: provider.KeyAlgorithmRSA, Validity: 5 * 365 * 24 * time.Hour}
	first, err := rootca.Create(ctx, store, opts)
	require.NoError(t, err)
	root := first.Certificate()
	assert.Equal(t, "CN=ca.cloudstack.apache.org", root.Subject.String())
	assert.Equal(t, x509.SHA256WithRSA, root.SignatureAlgorithm)
	assert.Equal(t, 3072, keyBits(root.PublicKey))
	assert.True(t, root.IsCA)
	assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, root.KeyUsage)
	assert.NotEmpty(t, root.SubjectKeyId)
	assert.WithinDuration(t, time.Now().Add(5*365*24*time.Hour), root.NotAfter, time.Minute)

	auth, err := store.LoadAuthority(ctx)
	require.NoError(t, err)
	assert.Contains(t, string(auth.Key), "-----BEGIN ENCRYPTED PRIVATE KEY-----", "the CA key is stored encrypted")

	// Open loads the same CA.
	second, err := rootca.Open(ctx, store, &rootca.Options{Password: passwordFunc})
	require.NoError(t, err)
	assert.Equal(t, root.Raw, second.Certificate().Raw)

	// It can issue, and the first instance's certificates verify with it.
	res := issue(t, second, &provider.IssueRequest{CommonName: "kvm1", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	require.NoError(t, first.VerifyPeer(ctx, &provider.VerifyRequest{Certificates: []*x509.Certificate{res.Certificate}, Usage: provider.UsageClientAuth}))
}

// TestOpenEmptyStore is issue 11, item 12: Open never creates a CA. On an
// empty store it fails with provider.ErrNotFound and leaves the store
// empty, so a server pointed at a wrong database mints no root.
func TestOpenEmptyStore(t *testing.T) {
	ctx := context.Background()
	store := rootca.NewMemStore()
	ca, err := rootca.Open(ctx, store, &rootca.Options{Signer: genKey(t, "p256")})
	assert.Nil(t, ca)
	require.ErrorIs(t, err, provider.ErrNotFound)
	assert.Contains(t, err.Error(), "Create")
	_, err = store.LoadAuthority(ctx)
	assert.ErrorIs(t, err, provider.ErrNotFound, "Open created nothing")
}

// TestCreateExisting checks that Create refuses a store that holds a CA,
// and leaves that CA alone.
func TestCreateExisting(t *testing.T) {
	ctx := context.Background()
	ca, store := newCA(t, nil)
	again, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: rootca.Options{Signer: genKey(t, "p256")}})
	assert.Nil(t, again)
	require.ErrorIs(t, err, rootca.ErrAuthorityExists)
	auth, err := store.LoadAuthority(ctx)
	require.NoError(t, err)
	assert.Equal(t, ca.Certificate().Raw, auth.Certificates[0])
}

// TestCloseLeavesStore checks that Close is idempotent and does not close
// the store, which the caller owns.
func TestCloseLeavesStore(t *testing.T) {
	ctx := context.Background()
	ca, store := newCA(t, nil)
	require.NoError(t, ca.Close())
	require.NoError(t, ca.Close(), "a second Close does nothing")
	_, err := store.LoadAuthority(ctx)
	assert.NoError(t, err, "the store is still open")
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	store := rootca.NewMemStore()
	_, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: rootca.Options{Password: passwordFunc}})
	require.NoError(t, err)

	tests := []struct {
		name string
		opts *rootca.Options
		want error
		text string
	}{
		{name: "no key source", opts: nil, text: "neither Password nor Signer"},
		{name: "wrong password", opts: &rootca.Options{Password: func() ([]byte, error) { return []byte("wrong"), nil }}, want: rootca.ErrIncorrectPassword},
		{name: "password callback fails", opts: &rootca.Options{Password: func() ([]byte, error) { return nil, errors.New("vault sealed") }}, text: "vault sealed"},
		{name: "signer that does not match", opts: &rootca.Options{Password: passwordFunc, Signer: genKey(t, "p256")}, text: "does not match"},
		{name: "SHA-1 signature algorithm", opts: &rootca.Options{Password: passwordFunc, SignatureAlgorithm: x509.ECDSAWithSHA1}, text: "not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rootca.Open(ctx, store, tc.opts)
			require.Error(t, err)
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
			}
			assert.Contains(t, err.Error(), tc.text)
			assert.NotContains(t, err.Error(), string(testPassword))
		})
	}
	_, err = rootca.Open(ctx, nil, &rootca.Options{Password: passwordFunc})
	assert.Error(t, err)
	_, err = rootca.Create(ctx, nil, &rootca.CreateOptions{Options: rootca.Options{Password: passwordFunc}})
	assert.Error(t, err)
	_, err = rootca.Create(ctx, rootca.NewMemStore(), nil)
	assert.ErrorContains(t, err, "neither Password nor Signer")
}

func TestOpenWithExternalSigner(t *testing.T) {
	ctx := context.Background()
	store := rootca.NewMemStore()
	hsmKey := genKey(t, "p384")
	ca, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: rootca.Options{Signer: hsmKey}})
	require.NoError(t, err)
	assert.True(t, sameKey(hsmKey.Public(), ca.Certificate().PublicKey))
	assert.Equal(t, x509.ECDSAWithSHA384, ca.Certificate().SignatureAlgorithm)
	auth, err := store.LoadAuthority(ctx)
	require.NoError(t, err)
	assert.Nil(t, auth.Key, "an external key never enters the store")

	_, err = rootca.Open(ctx, store, &rootca.Options{Password: passwordFunc})
	assert.ErrorContains(t, err, "no key")
	again, err := rootca.Open(ctx, store, &rootca.Options{Signer: hsmKey})
	require.NoError(t, err)
	issue(t, again, &provider.IssueRequest{CommonName: "kvm2", Role: provider.RoleServer, KeyAlgorithm: provider.KeyAlgorithmECDSA})
}

func TestIntermediateWithOfflineRoot(t *testing.T) {
	ctx := context.Background()
	rootSubject, err := rootca.ParseDN("CN=Offline Root,O=Example")
	require.NoError(t, err)
	root, rootKey, err := rootca.NewRoot(&rootca.CreateOptions{Subject: rootSubject, KeyAlgorithm: provider.KeyAlgorithmECDSA, KeySize: 384})
	require.NoError(t, err)
	interSubject, err := rootca.ParseDN("CN=Issuing CA,O=Example")
	require.NoError(t, err)
	ca, _ := newCACreate(t, &rootca.CreateOptions{Subject: interSubject, Parent: &rootca.Issuer{Certificate: root, Signer: rootKey}})

	chain, err := ca.CACertificates(ctx)
	require.NoError(t, err)
	require.Len(t, chain, 2)
	assert.Equal(t, "CN=Issuing CA,O=Example", chain[0].Subject.String())
	assert.Equal(t, root.Raw, chain[1].Raw)
	assert.True(t, chain[0].MaxPathLenZero)
	assert.Equal(t, root.SubjectKeyId, chain[0].AuthorityKeyId)
	require.NoError(t, chain[0].CheckSignatureFrom(root))

	res := issue(t, ca, &provider.IssueRequest{CommonName: "kvm3.example.org", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	inter.AddCert(chain[0])
	_, err = res.Certificate.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "kvm3.example.org"})
	require.NoError(t, err)
	require.NoError(t, ca.VerifyPeer(ctx, &provider.VerifyRequest{Certificates: []*x509.Certificate{res.Certificate}, Usage: provider.UsageServerAuth, ServerName: "kvm3.example.org"}))

	crl, err := ca.SignCRL(ctx)
	require.NoError(t, err)
	assert.NoError(t, crl.CheckSignatureFrom(chain[0]), "the intermediate signs the CRL")

	// A parent that is not a CA is refused.
	leafRes := issue(t, ca, &provider.IssueRequest{CommonName: "leaf", Role: provider.RoleClient})
	_, err = rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Password: passwordFunc},
		Parent: &rootca.Issuer{Certificate: leafRes.Certificate, Signer: leafRes.PrivateKey}})
	assert.ErrorContains(t, err, "not a CA")
}

func TestRegistryFactory(t *testing.T) {
	var reg provider.Registry
	_, store := newCA(t, &rootca.Options{Password: passwordFunc})
	require.NoError(t, reg.Register("root", "built-in CA", rootca.Factory(store, &rootca.Options{Password: passwordFunc})))
	p, err := reg.Open(context.Background(), "root")
	require.NoError(t, err)
	assert.Equal(t, "root", p.Name())
	assert.NotEmpty(t, p.Description())
}

func TestSQLiteDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir() + "/ca"
	store, err := sqlite.OpenDir(ctx, dir)
	require.NoError(t, err)
	ca, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: rootca.Options{Password: passwordFunc}})
	require.NoError(t, err)
	res := issue(t, ca, &provider.IssueRequest{CommonName: "kvm1", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: res.Certificate.SerialNumber, Reason: provider.ReasonSuperseded}))
	first, err := ca.SignCRL(ctx)
	require.NoError(t, err)
	require.NoError(t, ca.Close())
	require.NoError(t, store.Close())

	store, err = sqlite.OpenDir(ctx, dir)
	require.NoError(t, err)
	defer store.Close()
	again, err := rootca.Open(ctx, store, &rootca.Options{Password: passwordFunc})
	require.NoError(t, err)
	defer again.Close()
	assert.Equal(t, ca.Certificate().Raw, again.Certificate().Raw)
	rec, err := again.LookupCertificate(ctx, res.Certificate.SerialNumber)
	require.NoError(t, err)
	assert.Equal(t, provider.StatusRevoked, rec.Status)
	assert.Equal(t, provider.ReasonSuperseded, rec.Reason)
	_, revoked := again.IsRevoked(res.Certificate.SerialNumber)
	assert.True(t, revoked, "revocations survive a restart")
	second, err := again.SignCRL(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, second.Number.Cmp(first.Number), "CRL numbers increase across restarts")
}
