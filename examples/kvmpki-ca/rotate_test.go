package main

import (
	"crypto"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.step.sm/crypto/pemutil"

	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// TestRotate drives a whole CA rotation through the rotate command:
// begin makes a successor that issues from then on and comes first in the
// bundle, before the old CA; a second begin is refused; retire refuses
// while an old certificate is live and names it; retire -force retires
// anyway, names the abandoned certificate and drops the old CA from the
// bundle; status shows the phase (begun, done, and retired with the
// bundle push pending as a driver records it) and the driver lease. (On -db the command runs the same code over the shared store;
// rootca's storetest runs rotations on PostgreSQL and MariaDB.)
func TestRotate(t *testing.T) {
	dir := fixtureCA(t, "CN=kvmpki root CA,O=kvmpki")
	cli := func(args ...string) result {
		t.Helper()
		return runCLI(t, pwEnv, append(append(args[:1:1], "-dir", dir), args[1:]...)...)
	}
	ok := func(args ...string) string {
		t.Helper()
		r := cli(args...)
		require.NoError(t, r.err, "kvmpki-ca %s\nstderr: %s", strings.Join(args, " "), r.stderr)
		return r.stdout
	}
	tmp := t.TempDir()
	issue := func(name string) string {
		t.Helper()
		out := filepath.Join(tmp, name+".pem")
		ok("issue", "-key-out", filepath.Join(tmp, name+".key"), "-role", "host", "-dns", name+".example.org", "-out", out)
		return hexOf(readCert(t, out).SerialNumber)
	}
	bundleCerts := func() []string {
		t.Helper()
		var subjects []string
		for _, c := range parseCertsPEM(t, []byte(ok("bundle"))) {
			subjects = append(subjects, c.Subject.CommonName)
		}
		return subjects
	}

	oldSerial := issue("old")
	status := ok("rotate", "status")
	assert.Contains(t, status, "generation 1\tissuing")
	assert.Contains(t, status, "no rotation in progress")
	r := cli("rotate", "retire")
	assert.ErrorContains(t, r.err, "no rotation in progress")
	assert.False(t, isUsage(r.err))

	out := ok("rotate", "begin")
	assert.Contains(t, out, "began rotation: new CA CN=kvmpki root CA G2")
	cheapenSuccessorKey(t, dir)
	r = cli("rotate", "begin")
	assert.ErrorContains(t, r.err, "rotation is in progress", "a second rotation before the first ends")
	assert.Equal(t, []string{"kvmpki root CA G2", "kvmpki root CA"}, bundleCerts(), "the successor first, then the old CA")
	newSerial := issue("new")
	newCert := readCert(t, filepath.Join(tmp, "new.pem"))
	assert.Equal(t, "kvmpki root CA G2", newCert.Issuer.CommonName, "the successor issues")
	// During the overlap the CRL file holds a CRL of each CA, each signed
	// by its own CA, the current one first; DER cannot hold both.
	out = ok("crl", "-out", filepath.Join(tmp, "crl.pem"))
	assert.Contains(t, out, "CRL of CN=kvmpki root CA G2,O=kvmpki number ")
	assert.Contains(t, out, "CRL of CN=kvmpki root CA,O=kvmpki number ")
	crlPEM, err := os.ReadFile(filepath.Join(tmp, "crl.pem"))
	require.NoError(t, err)
	var crlIssuers []string
	for rest := crlPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		crl, err := x509.ParseRevocationList(b.Bytes)
		require.NoError(t, err)
		crlIssuers = append(crlIssuers, crl.Issuer.CommonName)
	}
	assert.Equal(t, []string{"kvmpki root CA G2", "kvmpki root CA"}, crlIssuers)
	r = cli("crl", "-der", "-out", filepath.Join(tmp, "crl.der"))
	assert.ErrorContains(t, r.err, "a DER file holds one CRL")

	status = ok("rotate", "status")
	assert.Contains(t, status, "generation 1\ttrusted\tCN=kvmpki root CA,O=kvmpki")
	assert.Contains(t, status, "1 live certificates")
	assert.Contains(t, status, "generation 2\tissuing\tCN=kvmpki root CA G2,O=kvmpki")
	assert.Contains(t, status, "phase: begun")
	assert.Contains(t, status, "driver lease: free")
	assert.Contains(t, status, "rotation in progress")

	r = cli("rotate", "retire")
	assert.ErrorContains(t, r.err, "still has 1 unexpired, unrevoked certificates")
	assert.False(t, isUsage(r.err))
	assert.Contains(t, r.stderr, "still live: "+oldSerial)
	assert.Equal(t, []string{"kvmpki root CA G2", "kvmpki root CA"}, bundleCerts(), "a refused retirement changes nothing")

	out = ok("rotate", "retire", "-force")
	assert.Contains(t, out, "retired CA CN=kvmpki root CA,O=kvmpki")
	assert.Contains(t, out, "no longer trusted: "+oldSerial)
	assert.NotContains(t, out, newSerial)
	assert.Equal(t, []string{"kvmpki root CA G2"}, bundleCerts(), "the old CA has left the bundle")
	status = ok("rotate", "status")
	assert.Contains(t, status, "generation 1\tretired ")
	assert.Contains(t, status, "phase: done")
	assert.Contains(t, status, "no rotation in progress")

	// A driver (ca.Manager.Rotate) that stopped between a retirement and
	// the end of its bundle push, its lease still unexpired: status shows
	// both, then the lease expired.
	store, err := sqlite.Open(t.Context(), filepath.Join(dir, dbFileName))
	require.NoError(t, err)
	defer store.Close()
	now := time.Now()
	require.NoError(t, store.ClaimRotation(t.Context(), "mgmt-1 pid 42 0a1b2c", now, now.Add(time.Hour)))
	require.NoError(t, store.SetRotationPushPending(t.Context(), "mgmt-1 pid 42 0a1b2c", now, true))
	status = ok("rotate", "status")
	assert.Contains(t, status, "phase: retired, bundle push pending")
	assert.Contains(t, status, `driver lease: held by "mgmt-1 pid 42 0a1b2c" until `+now.Add(time.Hour).UTC().Format(time.RFC3339))
	assert.Contains(t, status, "\nrotation in progress")
	for _, step := range [][]string{{"rotate", "begin"}, {"rotate", "retire", "-force"}} {
		r := cli(step...)
		require.ErrorIs(t, r.err, rootca.ErrRotationBusy, "%s while a driver holds the lease", step[1])
		assert.ErrorContains(t, r.err, `"mgmt-1 pid 42 0a1b2c"`)
	}
	assert.Equal(t, []string{"kvmpki root CA G2"}, bundleCerts(), "a refused begin changes nothing")
	require.NoError(t, store.ClaimRotation(t.Context(), "mgmt-1 pid 42 0a1b2c", now.Add(-time.Hour), now.Add(-time.Minute)))
	status = ok("rotate", "status")
	assert.Contains(t, status, `driver lease: "mgmt-1 pid 42 0a1b2c" expired at `)
	ok("rotate", "begin") // the expired lease is taken over
	status = ok("rotate", "status")
	assert.Contains(t, status, "driver lease: free", "the step released it")
	assert.Contains(t, status, "phase: begun")
}

// TestRotateUsage checks the rotate command's usage errors.
func TestRotateUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no step", []string{"rotate", "-dir", dir}, "needs a step"},
		{"unknown step", []string{"rotate", "-dir", dir, "spin"}, `unknown rotate step "spin"`},
		{"force without retire", []string{"rotate", "-dir", dir, "begin", "-force"}, "-force goes with retire only"},
		{"no location", []string{"rotate", "status"}, "-dir or -db is required"},
		{"extra argument", []string{"rotate", "-dir", dir, "retire", "now"}, `unexpected argument "now"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, pwEnv, tc.args...)
			require.Error(t, r.err)
			assert.True(t, isUsage(r.err), "a usage error: %v", r.err)
			assert.ErrorContains(t, r.err, tc.want)
		})
	}
}

// cheapenSuccessorKey re-encrypts the key of generation 2 in dir's store
// with 1,000 PBKDF2 rounds instead of 600,000, so that the commands after
// begin do not each spend seconds decrypting it under the race detector.
func cheapenSuccessorKey(t *testing.T, dir string) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, dbFileName))
	require.NoError(t, err)
	defer db.Close()
	var stored []byte
	require.NoError(t, db.QueryRowContext(t.Context(), `SELECT private_key FROM authority_generations WHERE generation = 2`).Scan(&stored))
	block, _ := pem.Decode(stored)
	require.NotNil(t, block)
	der, err := pemutil.DecryptPKCS8PrivateKey(block.Bytes, []byte(testPassword))
	require.NoError(t, err)
	key, err := x509.ParsePKCS8PrivateKey(der)
	require.NoError(t, err)
	_, err = db.ExecContext(t.Context(), `UPDATE authority_generations SET private_key = ? WHERE generation = 2`,
		encryptKeyCheaply(t, key.(crypto.Signer), testPassword))
	require.NoError(t, err)
}
