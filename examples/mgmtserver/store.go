package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/kvmpki/kvmpki/internal/dburl"
	"github.com/kvmpki/kvmpki/internal/secret"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/sqlstore"
	mysqlstore "github.com/kvmpki/kvmpki/rootca/sqlstore/mysql"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/postgres"
	"github.com/kvmpki/kvmpki/rootca/sqlstore/sqlite"
)

// PasswordEnv is the environment variable that holds the CA key password.
const PasswordEnv = "KVMPKI_CA_PASSWORD"

// caFlags are the flags that locate the CA, shared by both commands.
type caFlags struct {
	dir          string
	db           string
	passwordFile string
	getenv       func(string) string
}

func (c *caFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dir, "dir", "", "CA `directory`, holding the SQLite database ca.db (created with mode 0700; required without -db)")
	fs.StringVar(&c.db, "db", "", "shared CA database `URL`: postgres://USER@HOST/DB or mysql://USER@tcp(HOST:PORT)/DB (password from $"+dburl.PasswordEnv+")")
	fs.StringVar(&c.passwordFile, "password-file", "", "read the CA key password from `FILE` instead of $"+PasswordEnv)
}

// check validates the flags; warn receives a warning about a password in
// the -db URL.
func (c *caFlags) check(warn io.Writer) error {
	switch {
	case c.dir == "" && c.db == "":
		return &usageError{"-dir or -db is required"}
	case c.dir != "" && c.db != "":
		return &usageError{"-dir and -db exclude each other"}
	}
	if c.db != "" && dburl.HasPassword(c.db) {
		fmt.Fprintf(warn, "mgmtserver: warning: the -db URL holds a password, which other users can see in the process list; use $%s (or PostgreSQL's $PGPASSWORD or ~/.pgpass)\n", dburl.PasswordEnv)
	}
	return nil
}

// password returns the CA key password from -password-file or the
// environment. A trailing newline in the file is not part of it.
func (c *caFlags) password() ([]byte, error) {
	return secret.Password(c.passwordFile, PasswordEnv, c.getenv, "CA key")
}

// openStore opens the -db database, or the SQLite database ca.db in -dir
// (creating the directory with mode 0700).
func (c *caFlags) openStore(ctx context.Context) (rootca.Store, error) {
	if c.db != "" {
		u, err := dburl.WithPassword(c.db, c.getenv(dburl.PasswordEnv))
		if err != nil {
			return nil, &usageError{err.Error()}
		}
		s, err := sqlstore.OpenURL(ctx, u, sqlite.Backend(), postgres.Backend(), mysqlstore.Backend())
		if err != nil {
			return nil, fmt.Errorf("opening the -db database: %w", err)
		}
		return s, nil
	}
	return sqlite.OpenDir(ctx, c.dir)
}

// openCA opens the CA in store, creating it when the store holds none.
// Of two servers starting at once on one empty database, one creates it
// and the other, told that it exists, opens it.
func openCA(ctx context.Context, store rootca.Store, opts *rootca.Options, logger *slog.Logger) (*rootca.CA, error) {
	c, err := rootca.Open(ctx, store, opts)
	if !errors.Is(err, provider.ErrNotFound) {
		return c, err
	}
	c, err = rootca.Create(ctx, store, &rootca.CreateOptions{Options: *opts})
	if errors.Is(err, rootca.ErrAuthorityExists) {
		return rootca.Open(ctx, store, opts)
	}
	if err != nil {
		return nil, err
	}
	cert := c.Certificate()
	logger.Info("created the CA", "subject", cert.Subject.String(), "serial", provider.FormatSerial(cert.SerialNumber),
		"not_after", cert.NotAfter)
	return c, nil
}

// providerName is the name the built-in CA is registered under.
const providerName = "root"

// registry returns a provider registry holding the built-in CA: the
// first open hands over first (already opened, so the CA key is
// decrypted once at start), later ones open the store again.
func registry(store rootca.Store, opts *rootca.Options, first *rootca.CA) (*provider.Registry, error) {
	var mu sync.Mutex
	open := rootca.Factory(store, opts)
	reg := &provider.Registry{}
	err := reg.Register(providerName, "kvmpki built-in CA (rootca)", func(ctx context.Context) (provider.Provider, error) {
		mu.Lock()
		c := first
		first = nil
		mu.Unlock()
		if c != nil {
			return c, nil
		}
		return open(ctx)
	})
	return reg, err
}
