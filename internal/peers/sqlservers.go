package peers

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

// serverLock keeps a test that restarts the database servers from
// running while tests of other packages (other processes, under go test
// ./...) use them: users hold a shared flock on one file for their test,
// the restarting test an exclusive one.
var serverLock struct {
	sync.Mutex
	exclusive bool // this process holds the exclusive lock
}

func serverLockFile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "kvmpki-test-databases.lock"), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatalf("peers: database server lock: %v", err)
	}
	return f
}

func lockServers(t testing.TB, how int) {
	t.Helper()
	f := serverLockFile(t)
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		t.Fatalf("peers: database server lock: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// shareServers holds the servers in shared mode until the end of the test,
// unless this process holds them exclusively.
func shareServers(t testing.TB) {
	t.Helper()
	serverLock.Lock()
	exclusive := serverLock.exclusive
	serverLock.Unlock()
	if !exclusive {
		lockServers(t, syscall.LOCK_SH)
	}
}

// ExclusiveDatabaseServers waits until no other test process uses the
// database servers, and keeps them from it until the end of t: call it
// first in a test that stops or restarts them.
func ExclusiveDatabaseServers(t testing.TB) {
	t.Helper()
	lockServers(t, syscall.LOCK_EX)
	serverLock.Lock()
	serverLock.exclusive = true
	serverLock.Unlock()
	t.Cleanup(func() {
		serverLock.Lock()
		serverLock.exclusive = false
		serverLock.Unlock()
	})
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
	shareServers(t)
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
	shareServers(t)
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

// A DatabaseServer controls a server that .ci/start-databases started.
type DatabaseServer struct {
	t      testing.TB
	script string
}

// ControlDatabaseServer returns the control of the server whose script the
// environment variable env (PostgresRestartEnv or MySQLRestartEnv) names,
// after taking the servers exclusively (ExclusiveDatabaseServers). It
// skips the test when the variable is unset. The server is started again
// at the end of the test if it was left stopped.
func ControlDatabaseServer(t testing.TB, env string) *DatabaseServer {
	t.Helper()
	script := serverEnv(t, env, "controllable database")
	ExclusiveDatabaseServers(t)
	s := &DatabaseServer{t: t, script: script}
	t.Cleanup(func() { s.run("start") })
	return s
}

// Stop stops the server.
func (s *DatabaseServer) Stop() { s.t.Helper(); s.run("stop") }

// Start starts the server and waits until it accepts connections.
func (s *DatabaseServer) Start() { s.t.Helper(); s.run("start") }

func (s *DatabaseServer) run(action string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.script, action).CombinedOutput()
	if err != nil {
		s.t.Fatalf("peers: %s database server: %v\n%s", action, err, out)
	}
}
