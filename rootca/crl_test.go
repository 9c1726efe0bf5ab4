package rootca_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

func TestSignCRL(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	clock := now
	ca, _ := newCA(t, &rootca.Options{Time: func() time.Time { return clock }, CRLValidity: 48 * time.Hour})

	empty, err := ca.SignCRL(ctx)
	require.NoError(t, err)
	assert.Empty(t, empty.RevokedCertificateEntries)
	assert.Equal(t, int64(1), empty.Number.Int64())

	short := issue(t, ca, &provider.IssueRequest{CommonName: "short", Role: provider.RoleClient, KeyAlgorithm: provider.KeyAlgorithmECDSA, Validity: time.Hour})
	long := issue(t, ca, &provider.IssueRequest{CommonName: "long", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	unspecified := issue(t, ca, &provider.IssueRequest{CommonName: "plain", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	kept := issue(t, ca, &provider.IssueRequest{CommonName: "kept", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	for _, r := range []struct {
		c      *x509.Certificate
		reason provider.RevocationReason
	}{{short.Certificate, provider.ReasonKeyCompromise}, {long.Certificate, provider.ReasonSuperseded}, {unspecified.Certificate, provider.ReasonUnspecified}} {
		require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: r.c.SerialNumber, Reason: r.reason}))
	}

	crl, err := ca.SignCRL(ctx)
	require.NoError(t, err)
	// What SignCRL returns must agree with what a parser reads back.
	parsed, err := x509.ParseRevocationList(crl.Raw)
	require.NoError(t, err)
	// Issue 11, item 19: the list is the parsed one, every field set
	// (Extensions, entries' Raw), not a template partly filled in.
	assert.Equal(t, parsed, crl, "SignCRL returns the list parsed from its DER")
	assert.NotEmpty(t, crl.Extensions)
	require.NotEmpty(t, crl.RevokedCertificateEntries)
	assert.NotEmpty(t, crl.RevokedCertificateEntries[0].Raw)
	require.NoError(t, parsed.CheckSignatureFrom(ca.Certificate()))
	require.NoError(t, crl.CheckSignatureFrom(ca.Certificate()))
	assert.Equal(t, parsed.RawTBSRevocationList, crl.RawTBSRevocationList)
	assert.Equal(t, parsed.Signature, crl.Signature)
	assert.Equal(t, parsed.Number, crl.Number)
	assert.Equal(t, int64(2), parsed.Number.Int64())
	assert.True(t, parsed.ThisUpdate.Equal(crl.ThisUpdate))
	assert.True(t, parsed.NextUpdate.Equal(crl.NextUpdate))
	assert.Equal(t, 48*time.Hour, parsed.NextUpdate.Sub(parsed.ThisUpdate))
	assert.Equal(t, ca.Certificate().SubjectKeyId, parsed.AuthorityKeyId)
	assert.Equal(t, ca.Certificate().RawSubject, parsed.RawIssuer)
	assert.Equal(t, crl.SignatureAlgorithm, parsed.SignatureAlgorithm)

	got := map[string]int{}
	for _, e := range parsed.RevokedCertificateEntries {
		got[e.SerialNumber.String()] = e.ReasonCode
	}
	assert.Equal(t, map[string]int{
		short.Certificate.SerialNumber.String():       int(provider.ReasonKeyCompromise),
		long.Certificate.SerialNumber.String():        int(provider.ReasonSuperseded),
		unspecified.Certificate.SerialNumber.String(): 0,
	}, got)
	assert.NotContains(t, got, kept.Certificate.SerialNumber.String())
	for i, e := range crl.RevokedCertificateEntries {
		assert.Equal(t, e.SerialNumber, parsed.RevokedCertificateEntries[i].SerialNumber)
		assert.True(t, e.RevocationTime.Equal(parsed.RevokedCertificateEntries[i].RevocationTime))
	}

	// PEM form.
	block, rest := pem.Decode(rootca.EncodeCRL(crl.Raw))
	require.NotNil(t, block)
	assert.Empty(t, rest)
	assert.Equal(t, "X509 CRL", block.Type)
	assert.Equal(t, crl.Raw, block.Bytes)

	// Two hours on, the short-lived certificate has expired and leaves the
	// CRL; the number keeps increasing.
	clock = now.Add(2 * time.Hour)
	later, err := ca.SignCRL(ctx)
	require.NoError(t, err)
	assert.Len(t, later.RevokedCertificateEntries, 2)
	assert.Equal(t, int64(3), later.Number.Int64())
}

func TestSignCRLKeepsExpiredWhenExpiredAllowed(t *testing.T) {
	ctx := context.Background()
	clock := time.Now()
	ca, _ := newCA(t, &rootca.Options{Time: func() time.Time { return clock }, InsecureAllowExpired: true})
	res := issue(t, ca, &provider.IssueRequest{CommonName: "short", Role: provider.RoleClient, KeyAlgorithm: provider.KeyAlgorithmECDSA, Validity: time.Hour})
	require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: res.Certificate.SerialNumber}))
	clock = clock.Add(24 * time.Hour)
	crl, err := ca.SignCRL(ctx)
	require.NoError(t, err)
	assert.Len(t, crl.RevokedCertificateEntries, 1, "a CA that accepts expired certificates keeps listing revoked ones")
}

func TestSignCRLConcurrentNumbersUnique(t *testing.T) {
	ctx := context.Background()
	ca, _ := newCA(t, nil)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				res, err := ca.Issue(ctx, &provider.IssueRequest{CommonName: "c", Role: provider.RoleClient, KeyAlgorithm: provider.KeyAlgorithmECDSA})
				if !assert.NoError(t, err) {
					return
				}
				assert.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: res.Certificate.SerialNumber}))
				crl, err := ca.SignCRL(ctx)
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				assert.False(t, seen[crl.Number.String()], "CRL number %s repeated", crl.Number)
				seen[crl.Number.String()] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Len(t, seen, 80)
	last, err := ca.SignCRL(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, last.Number.Cmp(big.NewInt(81)))
	assert.Len(t, last.RevokedCertificateEntries, 80)
}

// TestRefreshSeesOtherProcesses: two CAs on one SQLite file stand for two
// management servers; a revocation by one reaches the other's handshake
// checks and CRL after Refresh.
func TestRefreshSeesOtherProcesses(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ca.db")
	sa, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	defer sa.Close()
	sb, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	defer sb.Close()
	signer := genKey(t, "p256")
	a, err := rootca.Create(ctx, sa, &rootca.CreateOptions{Options: rootca.Options{Signer: signer}})
	require.NoError(t, err)
	defer a.Close()
	b, err := rootca.Open(ctx, sb, &rootca.Options{Signer: signer})
	require.NoError(t, err)
	defer b.Close()
	res := issue(t, a, &provider.IssueRequest{CommonName: "kvm1", Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	require.NoError(t, b.VerifyPeer(ctx, &provider.VerifyRequest{Certificates: []*x509.Certificate{res.Certificate}, Usage: provider.UsageClientAuth}))
	require.NoError(t, a.Revoke(ctx, &provider.RevokeRequest{Serial: res.Certificate.SerialNumber, Reason: provider.ReasonKeyCompromise}))
	require.NoError(t, b.Refresh(ctx))
	assert.ErrorIs(t, b.VerifyPeer(ctx, &provider.VerifyRequest{Certificates: []*x509.Certificate{res.Certificate}, Usage: provider.UsageClientAuth}), provider.ErrRevoked)
	crl, err := b.SignCRL(ctx)
	require.NoError(t, err)
	assert.Len(t, crl.RevokedCertificateEntries, 1)
}
