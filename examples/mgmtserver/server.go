package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

// serverConfig is what startServer glues together.
type serverConfig struct {
	Manager *ca.Manager
	// Provider is the Manager's provider, for inventory look-ups
	// (revokeCertificate's cn check).
	Provider provider.Provider
	// Hostname, DNSNames and Addresses name the server in its
	// certificate (ca.IdentityOptions).
	Hostname  string
	DNSNames  []string
	Addresses []net.IP
	// APIListener and AgentListener are open TCP listeners; the server
	// owns them.
	APIListener, AgentListener net.Listener
	Logger                     *slog.Logger
	// Background runs the background task (renewals, alerts, the
	// server's own certificate). Tests start their own.
	Background bool
}

// server is a running management server.
type server struct {
	m         *ca.Manager
	id        *ca.Identity
	agents    *agents
	api       *api
	http      *http.Server
	agentLn   *ca.AgentListener
	apiAddr   net.Addr
	agentAddr net.Addr
	log       *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
	failed chan struct{} // closed when the API server stopped by itself
	err    error         // why, set before failed is closed
}

// startServer gets the server's certificate, and serves the API and the
// agent port on the listeners (and the background task if asked) until
// shutdown.
func startServer(ctx context.Context, cfg *serverConfig) (*server, error) {
	m, logger := cfg.Manager, cfg.Logger
	id, err := m.NewIdentity(ctx, &ca.IdentityOptions{Hostname: cfg.Hostname, DNSNames: cfg.DNSNames, Addresses: cfg.Addresses})
	if err != nil {
		return nil, err
	}
	as := newAgents(m, logger)
	a := newAPI(m, cfg.Provider, as, logger)
	h, err := a.handler()
	if err != nil {
		return nil, err
	}
	var bg *ca.Background
	if cfg.Background {
		if bg, err = m.NewBackground(backgroundOptions(as, id, logger)); err != nil {
			return nil, err
		}
	}
	agentLn, err := m.NewAgentListener(cfg.AgentListener, &ca.AgentServerConfig{Identity: id})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &server{
		m: m, id: id, agents: as, api: a, http: newHTTPServer(h, a.tlsConfig(id), logger), agentLn: agentLn,
		apiAddr: cfg.APIListener.Addr(), agentAddr: cfg.AgentListener.Addr(), log: logger,
		cancel: cancel, failed: make(chan struct{}),
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.http.ServeTLS(cfg.APIListener, "", ""); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
			close(s.failed)
		}
	}()
	go func() { defer s.wg.Done(); as.serve(ctx, agentLn) }()
	if bg != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := bg.Run(ctx); err != nil && ctx.Err() == nil {
				logger.Error("background task stopped", "err", err)
			}
		}()
	}
	return s, nil
}

// backgroundOptions are the background task's: renewals through the
// agents connected here, alerts logged, the server's certificate renewed
// in place.
func backgroundOptions(as *agents, id *ca.Identity, logger *slog.Logger) *ca.BackgroundOptions {
	return &ca.BackgroundOptions{
		HostFor:  as.hostFor,
		Identity: id,
		Alert: func(al ca.Alert) {
			logger.Warn("alert", "kind", al.Kind.String(), "host", al.Host, "serial", al.Serial, "alert", al.String())
		},
	}
}

// shutdown stops accepting agents and API connections, waits up to
// timeout for the API requests in flight, closes every agent session and
// stops the background task. The caller closes the Manager.
func (s *server) shutdown(timeout time.Duration) error {
	s.agentLn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.http.Close())
	}
	s.cancel()
	s.agents.closeAll()
	s.wg.Wait()
	select {
	case <-s.failed:
		err = errors.Join(s.err, err)
	default:
	}
	return err
}

// newHTTPServer is the API's server, with every timeout set: provisioning
// an agent takes a few seconds, so writes may take up to three minutes.
func newHTTPServer(h http.Handler, cfg *tls.Config, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         cfg,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelInfo),
	}
}
