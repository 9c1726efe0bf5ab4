package rootca_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // driver "mysql", for raw inspection
	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx", for raw inspection
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.step.sm/crypto/pemutil"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/postgres"
)

// sqlBackends are the backends on a database/sql database.
func sqlBackends() []backend {
	var out []backend
	for _, b := range backends {
		if b.open != nil {
			out = append(out, b)
		}
	}
	return out
}

// rawBackendDB opens a backend's database directly, without the store.
func rawBackendDB(t *testing.T, b backend, loc string) *sql.DB {
	t.Helper()
	driver := map[string]string{"sqlite": "sqlite", "postgresql": "pgx", "mariadb": "mysql"}[b.name]
	require.NotEmpty(t, driver)
	db, err := sql.Open(driver, loc)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// TestOpenStoresConcurrently starts several stores on one empty database
// at once, as the management servers of a cluster do after an upgrade:
// all open, and each schema version is applied once.
func TestOpenStoresConcurrently(t *testing.T) {
	for _, b := range sqlBackends() {
		t.Run(b.name, func(t *testing.T) {
			loc := b.database(t)
			const n = 4
			stores := make([]rootca.Store, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { stores[i], errs[i] = b.open(t.Context(), loc) })
			}
			wg.Wait()
			for i, s := range stores {
				if assert.NoError(t, errs[i], "open %d", i) {
					assert.NoError(t, s.Close())
				}
			}
			var count, distinct int
			require.NoError(t, rawBackendDB(t, b, loc).QueryRowContext(t.Context(),
				`SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_version`).Scan(&count, &distinct))
			assert.Equal(t, 4, count, "each schema version is applied once")
			assert.Equal(t, 4, distinct)
		})
	}
}

// TestKeyEncryptedAtRest checks that the CA key a password protects is
// stored only as an encrypted PKCS #8 block: neither its DER nor its
// private scalar appears in the database (for SQLite, in any byte of its
// files), and an external signer's key is not stored at all.
func TestKeyEncryptedAtRest(t *testing.T) {
	password := []byte("correct horse battery staple")
	for _, b := range sqlBackends() {
		t.Run(b.name, func(t *testing.T) {
			loc := b.database(t)
			s, err := b.open(t.Context(), loc)
			require.NoError(t, err)
			defer s.Close()
			ca, err := rootca.Create(t.Context(), s, &rootca.CreateOptions{Options: rootca.Options{
				Password:               func() ([]byte, error) { return password, nil },
				RevocationPollInterval: -1,
			}})
			require.NoError(t, err)
			defer ca.Close()

			var stored []byte
			require.NoError(t, rawBackendDB(t, b, loc).QueryRowContext(t.Context(),
				`SELECT private_key FROM authority`).Scan(&stored))
			block, rest := pem.Decode(stored)
			require.NotNil(t, block)
			assert.Equal(t, "ENCRYPTED PRIVATE KEY", block.Type)
			assert.Empty(t, bytes.TrimSpace(rest))
			der, err := pemutil.DecryptPKCS8PrivateKey(block.Bytes, password)
			require.NoError(t, err, "the stored key decrypts with the password")
			k, err := x509.ParsePKCS8PrivateKey(der)
			require.NoError(t, err)
			scalar, err := k.(*ecdsa.PrivateKey).Bytes()
			require.NoError(t, err)

			secrets := [][]byte{der, scalar, password}
			if b.name == "sqlite" {
				require.NoError(t, s.Close())
				files, err := filepath.Glob(loc + "*")
				require.NoError(t, err)
				for _, f := range files {
					data, err := os.ReadFile(f)
					require.NoError(t, err)
					for _, secret := range secrets {
						assert.False(t, bytes.Contains(data, secret), "%s holds key material in clear", filepath.Base(f))
					}
				}
				return
			}
			for _, secret := range secrets {
				assert.False(t, bytes.Contains(stored, secret), "the stored key holds key material in clear")
			}
		})
	}
}

// serverRestarts are the server backends with the environment variable
// naming their restart script.
var serverRestarts = map[string]string{
	"postgresql": peers.PostgresRestartEnv,
	"mariadb":    peers.MySQLRestartEnv,
}

// TestServerRestart stops the database server under an open store and a
// CA: calls fail with an error, within their context's deadline, while it
// is down, and work again once it is back, without reopening anything.
// The CA's background polling recovers too and learns of a revocation
// another store made after the restart.
func TestServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts database servers")
	}
	for _, b := range sqlBackends() {
		env, ok := serverRestarts[b.name]
		if !ok {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			server := peers.ControlDatabaseServer(t, env)
			loc := b.database(t)
			s, err := b.open(t.Context(), loc)
			require.NoError(t, err)
			defer s.Close()
			signer := genKey(t, "p256")
			ca, err := rootca.Create(t.Context(), s, &rootca.CreateOptions{Options: rootca.Options{Signer: signer, RevocationPollInterval: 50 * time.Millisecond}})
			require.NoError(t, err)
			defer ca.Close()
			req := &provider.IssueRequest{CSR: makeCSR(t, genKey(t, "p256"), "kvm", []string{"kvm.example.org"}, nil),
				DNSNames: []string{"kvm.example.org"}, Role: provider.RoleHost}
			_, err = ca.Issue(t.Context(), req)
			require.NoError(t, err)

			server.Stop()
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			start := time.Now()
			_, err = ca.Issue(ctx, req)
			cancel()
			require.Error(t, err, "issuing while the database is down")
			assert.Less(t, time.Since(start), 5*time.Second, "the call gives up with its context (3 s)")
			assert.Contains(t, err.Error(), "rootca: ")
			t.Logf("while down: %v", err)

			server.Start()
			var issued *provider.IssueResult
			require.Eventually(t, func() bool {
				issued, err = ca.Issue(t.Context(), req)
				return err == nil
			}, 30*time.Second, 100*time.Millisecond, "issuing works again after the restart: %v", err)

			// Another management server revokes; this CA's polling,
			// broken by the restart, must have recovered.
			other, err := b.open(t.Context(), loc)
			require.NoError(t, err)
			defer other.Close()
			_, err = other.Revoke(t.Context(), issued.Certificate.SerialNumber, provider.ReasonKeyCompromise, time.Now())
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				_, revoked := ca.IsRevoked(issued.Certificate.SerialNumber)
				return revoked
			}, 10*time.Second, 20*time.Millisecond, "the CA learns of revocations again after the restart")
		})
	}
}

// TestPostgresNotifiesRevocations checks that on PostgreSQL a revocation
// reaches another server's CA through LISTEN/NOTIFY, not the poll: with a
// poll interval of 10 seconds, the CA must still refuse the certificate
// within a second, every time.
func TestPostgresNotifiesRevocations(t *testing.T) {
	url := peers.PostgresDatabase(t)
	a, err := postgres.Open(t.Context(), url)
	require.NoError(t, err)
	defer a.Close()
	b, err := postgres.Open(t.Context(), url)
	require.NoError(t, err)
	defer b.Close()
	signer := genKey(t, "p256")
	issuer, err := rootca.Create(t.Context(), a, &rootca.CreateOptions{Options: rootca.Options{Signer: signer, RevocationPollInterval: -1}})
	require.NoError(t, err)
	defer issuer.Close()
	watcher, err := rootca.Open(t.Context(), b, &rootca.Options{Signer: signer, RevocationPollInterval: 10 * time.Second})
	require.NoError(t, err)
	defer watcher.Close()
	// The watcher's first wait only starts listening; give it a moment.
	time.Sleep(200 * time.Millisecond)

	for i := range 3 {
		res, err := issuer.Issue(t.Context(), &provider.IssueRequest{Role: provider.RoleClient, CommonName: "proxy", KeyAlgorithm: provider.KeyAlgorithmECDSA})
		require.NoError(t, err)
		serial := res.Certificate.SerialNumber
		start := time.Now()
		require.NoError(t, issuer.Revoke(t.Context(), &provider.RevokeRequest{Serial: serial, Reason: provider.ReasonKeyCompromise}))
		assert.Eventually(t, func() bool {
			_, revoked := watcher.IsRevoked(serial)
			return revoked
		}, time.Second, 5*time.Millisecond, "revocation %d not notified within a second", i)
		t.Logf("revocation %d refused by the other CA after %v", i, time.Since(start).Round(time.Millisecond))
	}
}
