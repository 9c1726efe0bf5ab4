package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// serve runs package ca's HTTP handlers (/ca.pem, /crl, /ocsp) on -listen
// and a strict agent port on -agent-listen that answers "ping" with
// "pong" after a verified handshake, until SIGTERM or SIGINT.
//
//	kvmpki-ca serve (-dir DIR | -db URL) -listen ADDR -agent-listen ADDR [-names a,b] [-ips x,y]
func (c *command) serve(ctx context.Context, args []string) error {
	fs := c.flags()
	listen := fs.String("listen", "", "HTTP `address` for /ca.pem, /crl and /ocsp (required)")
	agentListen := fs.String("agent-listen", "", "agent port `address` (required)")
	names := fs.String("names", "", "comma-separated DNS `names` of this server; the first is its host name (default: the system's host name)")
	ips := fs.String("ips", "", "comma-separated IP `addresses` of this server")
	if err := c.parse(args); err != nil {
		return err
	}
	if *listen == "" || *agentListen == "" {
		return &usageError{"-listen and -agent-listen are required"}
	}
	dnsNames := splitList(*names)
	if len(dnsNames) == 0 {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		dnsNames = []string{h}
	}
	var addrs []net.IP
	for _, s := range splitList(*ips) {
		ip := net.ParseIP(s)
		if ip == nil {
			return &usageError{fmt.Sprintf("-ips: %q is not an IP address", s)}
		}
		addrs = append(addrs, ip)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger := slog.New(slog.NewTextHandler(c.stderr, nil))
	if c.db == "" {
		if _, err := os.Stat(c.dbPath()); err != nil {
			return c.noCA(err)
		}
	}
	store, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	caKey, err := c.caKey(ctx, store)
	if err != nil {
		return err
	}
	opts := &rootca.Options{Password: c.password, Logger: logger}
	reg := &provider.Registry{}
	if err := reg.Register("root", "kvmpki built-in CA", rootca.Factory(store, opts)); err != nil {
		return err
	}
	m, err := ca.New(ctx, reg, &ca.Settings{Logger: logger})
	if err != nil {
		if errors.Is(err, provider.ErrNotFound) {
			return c.noCA(err)
		}
		return err
	}
	defer m.Close()
	id, err := m.NewIdentity(ctx, &ca.IdentityOptions{Hostname: dnsNames[0], DNSNames: dnsNames[1:], Addresses: addrs})
	if err != nil {
		return err
	}
	cas, err := m.CACertificates(ctx)
	if err != nil {
		return err
	}
	ocspHandler, err := m.OCSPHandler(&ca.OCSPResponder{Certificate: cas[0], Signer: caKey})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/ca.pem", m.CABundleHandler())
	mux.Handle("/crl", m.CRLHandler())
	mux.Handle("/ocsp", ocspHandler)
	mux.Handle("/ocsp/", ocspHandler)

	httpLn, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	inner, err := net.Listen("tcp", *agentListen)
	if err != nil {
		httpLn.Close()
		return err
	}
	agentLn, err := m.NewAgentListener(inner, &ca.AgentServerConfig{Identity: id})
	if err != nil {
		httpLn.Close()
		inner.Close()
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = srv.Serve(httpLn) }()
	go func() { defer wg.Done(); serveAgents(agentLn, logger) }()
	go func() { defer wg.Done(); _ = id.Run(ctx) }()
	fmt.Fprintf(c.stdout, "http %s\nagent %s\n", httpLn.Addr(), inner.Addr())

	<-ctx.Done()
	agentLn.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	wg.Wait()
	return err
}

// caKey decrypts the CA key held in the store, which OCSP responses are
// signed with (the provider contract cannot sign them).
func (c *command) caKey(ctx context.Context, store rootca.Store) (crypto.Signer, error) {
	auth, err := store.LoadAuthority(ctx)
	if err != nil {
		if errors.Is(err, provider.ErrNotFound) {
			return nil, c.noCA(err)
		}
		return nil, err
	}
	if len(auth.Key) == 0 {
		return nil, errors.New("the CA key is not in the store (an external signer): serve needs it for OCSP")
	}
	pw, err := c.password()
	if err != nil {
		return nil, err
	}
	defer clear(pw)
	block, err := pemutil.Parse(auth.Key, pemutil.WithPassword(pw))
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	key, ok := block.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key: %T is not a signer", block)
	}
	if len(auth.Certificates) > 0 {
		cert, err := x509.ParseCertificate(auth.Certificates[0])
		if err != nil {
			return nil, err
		}
		type equaler interface{ Equal(crypto.PublicKey) bool }
		if pub, ok := key.Public().(equaler); !ok || !pub.Equal(cert.PublicKey) {
			return nil, errors.New("CA key does not match the CA certificate")
		}
	}
	return key, nil
}

// serveAgents answers "ping" with "pong" on each verified connection;
// refusals are logged, with their reason, by package ca.
func serveAgents(ln net.Listener, logger *slog.Logger) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Minute))
			r := bufio.NewReader(conn)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.TrimSpace(line) == "ping" {
					if _, err := conn.Write([]byte("pong\n")); err != nil {
						return
					}
				}
			}
		}()
	}
}
