package rootca_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// The child process of TestCrashSafety reads its work from these
// variables: the backend, the database location (which may hold a
// password, so it is not on the command line) and the CA key file.
const (
	crashBackendEnv  = "ROOTCA_CRASH_CHILD_BACKEND"
	crashLocationEnv = "ROOTCA_CRASH_CHILD_LOCATION"
	crashKeyEnv      = "ROOTCA_CRASH_CHILD_KEY"
)

// crashKills is how many times TestCrashSafety kills a child per backend.
const crashKills = 20

// TestCrashSafety runs, per backend, a child process that issues and
// revokes through a CA in a loop, printing each serial once the call
// returned, and kills it with SIGKILL at a random moment, crashKills
// times. After each kill the store must open cleanly and hold every
// acknowledged issuance and revocation, and no serial twice.
func TestCrashSafety(t *testing.T) {
	if os.Getenv(crashBackendEnv) != "" {
		crashChild(t)
		return
	}
	if testing.Short() {
		t.Skip("kills child processes")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	// The memory store is left out: nothing survives the process anyway.
	for _, b := range sqlBackends() {
		t.Run(b.name, func(t *testing.T) {
			loc := b.database(t)
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			der, err := x509.MarshalPKCS8PrivateKey(key)
			require.NoError(t, err)
			keyFile := filepath.Join(t.TempDir(), "ca.key")
			require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
			// The CA is made once, as at deployment; the children open it.
			s, err := b.open(t.Context(), loc)
			require.NoError(t, err)
			ca, err := rootca.Create(t.Context(), s, &rootca.CreateOptions{Options: rootca.Options{Signer: key, RevocationPollInterval: -1}})
			require.NoError(t, err)
			require.NoError(t, ca.Close())
			require.NoError(t, s.Close())

			issued := map[string]bool{}
			revoked := map[string]bool{}
			for round := range crashKills {
				lines := runAndKill(t, exe, []string{
					crashBackendEnv + "=" + b.name, crashLocationEnv + "=" + loc, crashKeyEnv + "=" + keyFile,
				})
				for _, l := range lines {
					if v, ok := strings.CutPrefix(l, "issued "); ok {
						// The store's primary key makes a second row
						// impossible; a serial acknowledged twice is
						// what a duplicate would look like from outside.
						assert.False(t, issued[v], "round %d: serial %s acknowledged twice", round, v)
						issued[v] = true
					} else if v, ok := strings.CutPrefix(l, "revoked "); ok {
						assert.False(t, revoked[v], "round %d: revocation of %s acknowledged twice", round, v)
						revoked[v] = true
					}
				}
				checkAcknowledged(t, b, loc, round, issued, revoked)
			}
			t.Logf("%d kills: %d issuances and %d revocations acknowledged, all present", crashKills, len(issued), len(revoked))
			assert.NotEmpty(t, issued, "the children issued nothing before being killed")
		})
	}
}

// runAndKill starts the test binary as a crash child, kills it with
// SIGKILL between 0 and 600 ms after its start, and returns the lines it
// printed. A child that exits by itself fails the test.
func runAndKill(t *testing.T, exe string, env []string) []string {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^TestCrashSafety$")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	var lines []string
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		_, _ = io.Copy(io.Discard, stdout)
	})
	time.Sleep(time.Duration(mrand.IntN(600)) * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	wg.Wait()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("crash child ended by itself (%v) instead of being killed:\n%s\n%s", err, strings.Join(lines, "\n"), stderr.String())
	}
	return lines
}

// checkAcknowledged opens the store the way a restarted server would and
// checks every acknowledged issuance and revocation, and that no serial
// is recorded twice.
func checkAcknowledged(t *testing.T, b backend, loc string, round int, issued, revoked map[string]bool) {
	t.Helper()
	s, err := b.open(t.Context(), loc)
	require.NoError(t, err, "round %d: the store opens after the kill", round)
	defer s.Close()
	list, err := s.ListCertificates(t.Context(), nil)
	require.NoError(t, err)
	seen := make(map[string]*provider.CertificateRecord, len(list))
	for _, rec := range list {
		hex := provider.FormatSerial(rec.Serial)
		require.NotContains(t, seen, hex, "round %d: serial %s recorded twice", round, hex)
		seen[hex] = rec
	}
	for hex := range issued {
		rec, ok := seen[hex]
		if assert.True(t, ok, "round %d: acknowledged issuance %s lost", round, hex) && revoked[hex] {
			assert.Equal(t, provider.StatusRevoked, rec.Status, "round %d: acknowledged revocation %s lost", round, hex)
		}
	}
	if b.name == "sqlite" {
		var check string
		require.NoError(t, rawBackendDB(t, b, loc).QueryRowContext(t.Context(), `PRAGMA integrity_check`).Scan(&check))
		require.Equal(t, "ok", check, "round %d", round)
	}
}

// crashChild is the child of TestCrashSafety: it issues and revokes until
// killed, printing "issued SERIAL" and "revoked SERIAL" once each call
// has returned.
func crashChild(t *testing.T) {
	var b backend
	for _, c := range backends {
		if c.name == os.Getenv(crashBackendEnv) {
			b = c
		}
	}
	require.NotNil(t, b.open, "unknown backend")
	pemKey, err := os.ReadFile(os.Getenv(crashKeyEnv))
	require.NoError(t, err)
	block, _ := pem.Decode(pemKey)
	require.NotNil(t, block)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	require.NoError(t, err)
	key := k.(*ecdsa.PrivateKey)

	ctx := t.Context()
	s, err := b.open(ctx, os.Getenv(crashLocationEnv))
	require.NoError(t, err)
	ca, err := rootca.Open(ctx, s, &rootca.Options{Signer: key, RevocationPollInterval: -1})
	require.NoError(t, err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "kvm"}}, key)
	require.NoError(t, err)
	req := &provider.IssueRequest{CSR: csr, DNSNames: []string{"kvm.example.org"}, Role: provider.RoleHost}
	// Several issuers at once, as a busy server has, so that the kills
	// also land in SQLite's group commits.
	var wg sync.WaitGroup
	for range crashIssuers {
		wg.Go(func() {
			var mine []*big.Int
			for i := 0; ; i++ {
				res, err := ca.Issue(ctx, req)
				if err != nil {
					fmt.Fprintln(os.Stderr, "issue:", err)
					os.Exit(3)
				}
				serial := res.Certificate.SerialNumber
				fmt.Printf("issued %s\n", provider.FormatSerial(serial))
				mine = append(mine, serial)
				if i%3 != 2 {
					continue
				}
				victim := mine[mrand.IntN(len(mine))]
				err = ca.Revoke(ctx, &provider.RevokeRequest{Serial: victim, Reason: provider.ReasonKeyCompromise})
				switch {
				case err == nil:
					fmt.Printf("revoked %s\n", provider.FormatSerial(victim))
				case !errors.Is(err, provider.ErrAlreadyRevoked):
					fmt.Fprintln(os.Stderr, "revoke:", err)
					os.Exit(3)
				}
			}
		})
	}
	wg.Wait()
}

// crashIssuers is how many goroutines of a crash child issue at once.
const crashIssuers = 4
