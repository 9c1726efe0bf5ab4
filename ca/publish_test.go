package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/mysql"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/postgres"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// TestOCSPHandlerSigner: with a provider that signs OCSP responses
// (rootca), the handler needs no key from the platform and the answers are
// the provider's, even when a fallback is given; a provider that cannot
// sign needs the fallback.
func TestOCSPHandlerSigner(t *testing.T) {
	e := newEnv(t, nil)
	res, _ := e.issue(t, provider.RoleHost, []string{"h.example"}, nil)
	// A fallback responder the CA never certified: answers signed with it
	// would not verify, so a verifying answer is the provider's.
	rogue, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tests := []struct {
		name     string
		provider string
		fallback *ca.OCSPResponder
		wantErr  error // from OCSPHandler
	}{
		{name: "provider signs, no fallback", provider: "root"},
		{name: "provider signs before the fallback", provider: "root", fallback: &ca.OCSPResponder{Certificate: e.caCert, Signer: rogue}},
		{name: "fallback for a provider that cannot sign", provider: "bare", fallback: &ca.OCSPResponder{Certificate: e.caCert, Signer: e.caKey}},
		{name: "neither", provider: "bare", wantErr: errors.ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, e.m.SetProvider(context.Background(), tc.provider))
			h, err := e.m.OCSPHandler(tc.fallback)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			serial := res.Certificate.SerialNumber
			if tc.provider == "bare" {
				serial = big.NewInt(0x7777) // bare has no inventory: answers come from the CRL path
			}
			der, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: serial}, e.caCert, nil)
			require.NoError(t, err)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der)))
			if tc.provider == "bare" {
				// bare has neither inventory nor CRL: an internal error,
				// but signed with nothing; the fallback was accepted.
				_, err = ocsp.ParseResponse(rec.Body.Bytes(), nil)
				var re ocsp.ResponseError
				require.ErrorAs(t, err, &re)
				assert.Equal(t, ocsp.InternalError, re.Status)
				return
			}
			resp, err := ocsp.ParseResponse(rec.Body.Bytes(), e.caCert)
			require.NoError(t, err, "the answer does not verify against the CA")
			assert.Equal(t, ocsp.Good, resp.Status)
			assert.Nil(t, resp.Certificate, "signed by the CA itself")
		})
	}

	t.Run("provider swapped to one that cannot sign", func(t *testing.T) {
		require.NoError(t, e.m.SetProvider(context.Background(), "root"))
		h, err := e.m.OCSPHandler(nil)
		require.NoError(t, err)
		require.NoError(t, e.m.SetProvider(context.Background(), "bare"))
		r := ocspRaw(t, h, e.caCert, res.Certificate.SerialNumber)
		_, err = ocsp.ParseResponse(r, nil)
		var re ocsp.ResponseError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, ocsp.Unauthorized, re.Status)
	})
}

// TestOCSPStatusValues: provider.OCSPStatus values are x/crypto/ocsp's,
// which the OCSP code converts with int().
func TestOCSPStatusValues(t *testing.T) {
	assert.Equal(t, ocsp.Good, int(provider.OCSPGood))
	assert.Equal(t, ocsp.Revoked, int(provider.OCSPRevoked))
	assert.Equal(t, ocsp.Unknown, int(provider.OCSPUnknown))
}

func ocspRaw(t testing.TB, h http.Handler, issuer *x509.Certificate, serial *big.Int) []byte {
	t.Helper()
	der, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: serial}, issuer, nil)
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der)))
	return rec.Body.Bytes()
}

// sharedStore is a second handle on a MemStore: closing it leaves the
// store open.
type sharedStore struct{ *rootca.MemStore }

func (sharedStore) Close() error { return nil }

// TestRevocationAcrossManagers: two management servers, each a Manager
// around its own rootca CA on one shared store (a MemStore, SQLite,
// PostgreSQL, MariaDB). A revocation through
// manager A is in manager B's served CRL and OCSP answer within a second,
// both having been cached as "not revoked" before: rootca's notice
// (polling, or PostgreSQL's LISTEN/NOTIFY) makes B re-sign its CRL and drop
// the cached answer.
func TestRevocationAcrossManagers(t *testing.T) {
	tests := []struct {
		name  string
		open  func(t *testing.T) (a, b rootca.Store)
		limit time.Duration
	}{
		{name: "memory", limit: time.Second, open: func(t *testing.T) (rootca.Store, rootca.Store) {
			s := rootca.NewMemStore()
			return s, sharedStore{s}
		}},
		{name: "sqlite", limit: time.Second, open: func(t *testing.T) (rootca.Store, rootca.Store) {
			path := filepath.Join(t.TempDir(), "ca.db")
			a, err := sqlite.Open(t.Context(), path)
			require.NoError(t, err)
			b, err := sqlite.Open(t.Context(), path)
			require.NoError(t, err)
			return a, b
		}},
		{name: "postgresql", limit: time.Second, open: func(t *testing.T) (rootca.Store, rootca.Store) {
			url := peers.PostgresDatabase(t)
			a, err := postgres.Open(t.Context(), url)
			require.NoError(t, err)
			b, err := postgres.Open(t.Context(), url)
			require.NoError(t, err)
			return a, b
		}},
		{name: "mariadb", limit: time.Second, open: func(t *testing.T) (rootca.Store, rootca.Store) {
			dsn := peers.MySQLDatabase(t)
			a, err := mysql.Open(t.Context(), dsn)
			require.NoError(t, err)
			b, err := mysql.Open(t.Context(), dsn)
			require.NoError(t, err)
			return a, b
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			storeA, storeB := tc.open(t)
			t.Cleanup(func() { storeB.Close(); storeA.Close() })
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			creator, err := rootca.Create(ctx, storeA, &rootca.CreateOptions{Options: rootca.Options{Signer: key, RevocationPollInterval: -1}})
			require.NoError(t, err)
			t.Cleanup(func() { creator.Close() })
			manager := func(store rootca.Store) (*ca.Manager, *rootca.CA) {
				reg := &provider.Registry{}
				var opened *rootca.CA
				require.NoError(t, reg.Register("root", "kvmpki built-in CA", func(ctx context.Context) (provider.Provider, error) {
					c, err := rootca.Open(ctx, store, &rootca.Options{Signer: key})
					opened = c
					return c, err
				}))
				m, err := ca.New(ctx, reg, nil)
				require.NoError(t, err)
				t.Cleanup(func() { m.Close() })
				return m, opened
			}
			a, _ := manager(storeA)
			b, caB := manager(storeB)
			// When B's provider learns of the revocation, for the log.
			notices := caB.NotifyRevocations(t.Context())
			crlB := b.CRLHandler()
			ocspB, err := b.OCSPHandler(nil)
			require.NoError(t, err)

			res, err := creator.Issue(ctx, &provider.IssueRequest{DNSNames: []string{"kvm1.example"}, Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
			require.NoError(t, err)
			serial := res.Certificate.SerialNumber
			inCRL := func() bool {
				rec := httpGet(t, crlB, "/crl", nil)
				require.Equal(t, 200, rec.Code)
				crl, err := x509.ParseRevocationList(rec.Body.Bytes())
				require.NoError(t, err)
				require.NoError(t, crl.CheckSignatureFrom(creator.Certificate()))
				for _, e := range crl.RevokedCertificateEntries {
					if e.SerialNumber.Cmp(serial) == 0 {
						return true
					}
				}
				return false
			}
			ocspStatus := func() int {
				resp, err := ocsp.ParseResponse(ocspRaw(t, ocspB, creator.Certificate(), serial), creator.Certificate())
				require.NoError(t, err)
				return resp.Status
			}
			// B has served, and cached, the certificate as good.
			require.False(t, inCRL())
			require.Equal(t, ocsp.Good, ocspStatus())

			start := time.Now()
			require.NoError(t, a.Revoke(ctx, &ca.RevokeRequest{Serial: serial.Text(16), Reason: provider.ReasonKeyCompromise}))
			var crlAt, ocspAt time.Duration
			noticed := make(chan time.Duration, 1)
			go func() {
				if _, ok := <-notices; ok {
					noticed <- time.Since(start)
				}
			}()
			for crlAt == 0 || ocspAt == 0 {
				if time.Since(start) > 5*time.Second {
					break
				}
				if crlAt == 0 && inCRL() {
					crlAt = time.Since(start)
				}
				if ocspAt == 0 && ocspStatus() == ocsp.Revoked {
					ocspAt = time.Since(start)
				}
				time.Sleep(2 * time.Millisecond)
			}
			var noticeAt time.Duration
			select {
			case noticeAt = <-noticed:
			default:
			}
			t.Logf("%s: revocation through A noticed by B's provider after %v, in B's CRL after %v, in B's OCSP answer after %v", tc.name, noticeAt, crlAt, ocspAt)
			require.NotZero(t, crlAt, "B's CRL never showed the revocation")
			require.NotZero(t, ocspAt, "B's OCSP answer never showed the revocation")
			assert.Less(t, crlAt, tc.limit)
			assert.Less(t, ocspAt, tc.limit)
		})
	}
}

// TestOCSPCacheKeepsCertID: answers are cached per serial and per CertID
// (hash algorithm, issuer): a request with another hash than a cached
// answer's gets an answer naming its own CertID, which clients such as
// OpenSSL match against their request.
func TestOCSPCacheKeepsCertID(t *testing.T) {
	e := newEnv(t, nil)
	h, err := e.m.OCSPHandler(nil)
	require.NoError(t, err)
	res, _ := e.issue(t, provider.RoleHost, []string{"h.example"}, nil)
	for _, hash := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA1, crypto.SHA384} {
		t.Run(hash.String(), func(t *testing.T) {
			der, err := ocsp.CreateRequest(res.Certificate, e.caCert, &ocsp.RequestOptions{Hash: hash})
			require.NoError(t, err)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der)))
			resp, err := ocsp.ParseResponseForCert(rec.Body.Bytes(), res.Certificate, e.caCert)
			require.NoError(t, err)
			assert.Equal(t, hash, resp.IssuerHash, "the answer's CertID hash")
			assert.Equal(t, ocsp.Good, resp.Status)
		})
	}
}

// TestOCSPDuringRotation: while a rotation overlaps two CAs, the
// responder answers for the certificates of both, each answer signed by
// its own CA through the provider.
func TestOCSPDuringRotation(t *testing.T) {
	ctx := context.Background()
	pw := func() ([]byte, error) { return []byte("rotation test password"), nil }
	store := rootca.NewMemStore()
	created, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: rootca.Options{Password: pw, RevocationPollInterval: -1}})
	require.NoError(t, err)
	t.Cleanup(func() { created.Close() })
	clk := &clock{}
	reg := &provider.Registry{}
	require.NoError(t, reg.Register("root", "kvmpki built-in CA", func(context.Context) (provider.Provider, error) { return nopClose{created}, nil }))
	m, err := ca.New(ctx, reg, &ca.Settings{Time: clk.Now})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	h, err := m.OCSPHandler(nil)
	require.NoError(t, err)

	oldCA := created.Certificate()
	oldLeaf, err := created.Issue(ctx, &provider.IssueRequest{DNSNames: []string{"old.example"}, Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	require.NoError(t, err)
	newCA, err := created.BeginRotation(ctx, nil)
	require.NoError(t, err)
	newLeaf, err := created.Issue(ctx, &provider.IssueRequest{DNSNames: []string{"new.example"}, Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA})
	require.NoError(t, err)
	clk.Set(time.Now().Add(2 * time.Minute)) // past the Manager's CA-certificate cache

	for _, tc := range []struct {
		name         string
		leaf, issuer *x509.Certificate
	}{
		{"previous CA", oldLeaf.Certificate, oldCA},
		{"successor", newLeaf.Certificate, newCA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := ocsp.ParseResponseForCert(ocspRaw(t, h, tc.issuer, tc.leaf.SerialNumber), tc.leaf, tc.issuer)
			require.NoError(t, err, "the answer does not verify against the leaf's own CA")
			assert.Equal(t, ocsp.Good, resp.Status)
		})
	}
}
