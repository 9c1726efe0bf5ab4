package main

import (
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
)

// TestSharedDatabase runs the commands of two management servers against
// one -db database, the password in $KVMPKI_DB_PASSWORD: a CA created by
// one is used by the other, and what one issues and revokes the other
// lists and puts in its CRL.
func TestSharedDatabase(t *testing.T) {
	for _, kind := range []string{"postgresql", "mariadb"} {
		t.Run(kind, func(t *testing.T) {
			var dbURL, dbPassword string
			switch kind {
			case "postgresql":
				u, err := url.Parse(peers.PostgresDatabase(t))
				require.NoError(t, err)
				dbPassword, _ = u.User.Password()
				u.User = url.User(u.User.Username())
				dbURL = u.String()
			case "mariadb":
				cfg, err := mysql.ParseDSN(peers.MySQLDatabase(t))
				require.NoError(t, err)
				dbPassword, cfg.Passwd = cfg.Passwd, ""
				dbURL = "mysql://" + cfg.FormatDSN()
			}
			env := map[string]string{PasswordEnv: testPassword, DBPasswordEnv: dbPassword}
			server := func(args ...string) result {
				t.Helper()
				r := runCLI(t, env, append(args[:1:1], append([]string{"-db", dbURL}, args[1:]...)...)...)
				require.NoError(t, r.err, "kvmpki-ca %s\nstderr: %s", strings.Join(args, " "), r.stderr)
				assert.NotContains(t, r.stdout+r.stderr, dbPassword, "the database password leaked")
				return r
			}

			r := server("init")
			assert.Contains(t, r.stdout, "created CA")
			again := runCLI(t, env, "init", "-db", dbURL)
			assert.ErrorContains(t, again.err, "already holds a CA", "a second server does not create a second CA")

			tmp := t.TempDir()
			cert := filepath.Join(tmp, "host.pem")
			server("issue", "-key-out", filepath.Join(tmp, "host.key"), "-role", "host", "-dns", "kvm1.example.org", "-out", cert)
			issued := readCert(t, cert)
			serial := hexOf(issued.SerialNumber)
			assert.Contains(t, server("list").stdout, serial, "the other server lists the certificate")
			server("revoke", "-serial", serial, "-reason", "keyCompromise")
			crl := filepath.Join(tmp, "crl.pem")
			server("crl", "-out", crl)
			assert.Contains(t, readCRLSerials(t, crl), serial, "the CRL holds the revocation")

			noPassword := runCLI(t, map[string]string{PasswordEnv: testPassword}, "list", "-db", dbURL)
			assert.Error(t, noPassword.err, "without $%s the database refuses the connection", DBPasswordEnv)
		})
	}
}

func TestPasswordInURLWarns(t *testing.T) {
	r := runCLI(t, pwEnv, "list", "-db", "mysql://ca:visible@tcp(127.0.0.1:1)/kvmpki")
	assert.Error(t, r.err)
	assert.Contains(t, r.stderr, "the -db URL holds a password")
	assert.NotContains(t, errString(r.err), "visible")
}

// readCRLSerials returns the serials, in hexadecimal, of the PEM CRL in
// the file name.
func readCRLSerials(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	b, _ := pem.Decode(data)
	require.NotNil(t, b, "a PEM CRL")
	crl, err := x509.ParseRevocationList(b.Bytes)
	require.NoError(t, err)
	var out []string
	for _, e := range crl.RevokedCertificateEntries {
		out = append(out, hexOf(e.SerialNumber))
	}
	return out
}
