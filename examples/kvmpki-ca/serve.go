package main

import (
	"bufio"
	"context"
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
	addrs, err := parseIPs("-ips", *ips)
	if err != nil {
		return err
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
	// rootca signs OCSP responses itself (provider.OCSPSigner): serve
	// never holds the CA key.
	ocspHandler, err := m.OCSPHandler(nil)
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
