package peers

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// The database servers are not started per test: .ci/start-databases
// starts one PostgreSQL and one MariaDB server and prints these variables,
// and each test gets a database of its own on them.
const (
	// PostgresURLEnv names a PostgreSQL URL whose user may create and
	// drop databases, such as postgres://kvmpki:pw@127.0.0.1:55432/kvmpki.
	PostgresURLEnv = "KVMPKI_TEST_POSTGRES_URL"
	// MySQLURLEnv names a MariaDB DSN (go-sql-driver/mysql form) whose
	// user may create and drop databases named kvmpki_t_..., such as
	// kvmpki:pw@tcp(127.0.0.1:53306)/kvmpki.
	MySQLURLEnv = "KVMPKI_TEST_MYSQL_URL"
	// PostgresRestartEnv and MySQLRestartEnv name executables that
	// restart the servers, for the tests of recovery.
	PostgresRestartEnv = "KVMPKI_TEST_POSTGRES_RESTART"
	MySQLRestartEnv    = "KVMPKI_TEST_MYSQL_RESTART"
)

// serverEnv returns the value of the environment variable env, or skips t
// (fails it under KVMPKI_INTEROP=require) when it is unset.
func serverEnv(t testing.TB, env, server string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		unavailable(t, "no "+server+" server: "+env+" is unset (start one with: eval \"$(bash .ci/start-databases)\")")
	}
	return v
}

// newDatabaseName returns a fresh database name for a test.
func newDatabaseName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "kvmpki_t_" + hex.EncodeToString(b)
}

// PostgresDatabase creates an empty schema on the PostgreSQL server that
// KVMPKI_TEST_POSTGRES_URL names, drops it at the end of the test, and
// returns a URL whose connections use it (search_path): a schema is much
// cheaper to create than a database. It skips the test when the variable
// is unset.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	admin := serverEnv(t, PostgresURLEnv, "PostgreSQL")
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		t.Fatalf("peers: %s: %v", PostgresURLEnv, err)
	}
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("peers: %s must be a postgres:// URL", PostgresURLEnv)
	}
	name := newDatabaseName()
	adminExec(t, stdlib.OpenDB(*cfg), `CREATE SCHEMA `+name)
	t.Cleanup(func() {
		db := stdlib.OpenDB(*cfg)
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+name+` CASCADE`); err != nil {
			t.Errorf("peers: drop schema %s: %v", name, err)
		}
	})
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// MySQLDatabase creates an empty database on the MariaDB server that
// KVMPKI_TEST_MYSQL_URL names, drops it at the end of the test, and returns
// its DSN. It skips the test when the variable is unset.
func MySQLDatabase(t testing.TB) string {
	t.Helper()
	admin := serverEnv(t, MySQLURLEnv, "MariaDB")
	cfg, err := mysql.ParseDSN(admin)
	if err != nil {
		t.Fatalf("peers: %s: %v", MySQLURLEnv, err)
	}
	name := newDatabaseName()
	open := func() *sql.DB {
		c, err := mysql.NewConnector(cfg)
		if err != nil {
			t.Fatalf("peers: %s: %v", MySQLURLEnv, err)
		}
		return sql.OpenDB(c)
	}
	adminExec(t, open(), `CREATE DATABASE `+name)
	t.Cleanup(func() {
		db := open()
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name); err != nil {
			t.Errorf("peers: drop database %s: %v", name, err)
		}
	})
	cfg = cfg.Clone()
	cfg.DBName = name
	return cfg.FormatDSN()
}

func adminExec(t testing.TB, db *sql.DB, stmt string) {
	t.Helper()
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		t.Fatalf("peers: %s: %v", strings.Fields(stmt)[0]+" "+strings.Fields(stmt)[1], err)
	}
}

// RestartDatabaseServer restarts the server whose restart command the
// environment variable env (PostgresRestartEnv or MySQLRestartEnv) names.
// It skips the test when the variable is unset.
func RestartDatabaseServer(t testing.TB, env string) {
	t.Helper()
	script := serverEnv(t, env, "restartable database")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, script, "restart").CombinedOutput()
	if err != nil {
		t.Fatalf("peers: restart database server: %v\n%s", err, out)
	}
}
