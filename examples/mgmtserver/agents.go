package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

// errHostNotConnected means no agent of that host id is connected here.
var errHostNotConnected = errors.New("mgmtserver: host not connected to this server")

// agent is one connected agent.
type agent struct {
	hostID  string
	cert    *x509.Certificate // the verified leaf it connected with
	remote  net.Addr
	since   time.Time
	session *ca.AgentSession
}

// serial returns the serial of the certificate the agent connected with.
func (a *agent) serial() string { return provider.FormatSerial(a.cert.SerialNumber) }

// agents are the agents connected to this server, by host id: the
// certificate's common name (or its first DNS name).
type agents struct {
	m   *ca.Manager
	log *slog.Logger

	mu   sync.Mutex
	byID map[string]*agent
	wg   sync.WaitGroup
}

func newAgents(m *ca.Manager, log *slog.Logger) *agents {
	return &agents{m: m, log: log, byID: make(map[string]*agent)}
}

// hostID names the holder of a certificate: its common name, or its first
// DNS name.
func hostID(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return ""
}

// serve accepts agents on ln until it is closed (or ctx is done). A
// failed accept (too many open files, say) is retried after a growing
// pause, as net/http does: it never ends the agent port for good.
func (as *agents) serve(ctx context.Context, ln *ca.AgentListener) {
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			pause = min(max(2*pause, minAcceptRetry), maxAcceptRetry)
			as.log.Error("agent port: accept failed; trying again", "err", err, "retry_in", pause)
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		pause = 0
		conn, ok := c.(*ca.AgentConn)
		if !ok { // never: the listener returns *ca.AgentConn
			c.Close()
			continue
		}
		as.wg.Add(1)
		go func() {
			defer as.wg.Done()
			as.handle(ctx, conn)
		}()
	}
}

// handle runs one agent connection: the verified handshake, the agent's
// hello, its registration under its host id, and its provisioning when
// it asks for it.
func (as *agents) handle(ctx context.Context, conn *ca.AgentConn) {
	remote := conn.RemoteAddr()
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	err := conn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		// The refusal's reason is logged by package ca.
		as.log.Info("agent handshake failed", "remote", remote.String(), "err", err)
		conn.Close()
		return
	}
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 { // never in strict mode
		conn.Close()
		return
	}
	leaf := certs[0]
	id := hostID(leaf)
	if id == "" {
		as.log.Warn("agent refused: its certificate names no host", "remote", remote.String(),
			"serial", provider.FormatSerial(leaf.SerialNumber))
		conn.Close()
		return
	}
	session, err := ca.NewAgentSession(ctx, conn, nil)
	if err != nil {
		as.log.Info("agent hello failed", "host", id, "remote", remote.String(), "err", err)
		return // the session closed conn
	}
	a := &agent{hostID: id, cert: leaf, remote: remote, since: time.Now(), session: session}
	as.register(a)
	as.log.Info("agent connected", "host", id, "remote", remote.String(), "serial", a.serial(),
		"not_after", leaf.NotAfter, "hello_host", session.Hello().HostID, "provision", session.Hello().Provision)
	if session.Hello().Provision {
		if _, err := as.provision(ctx, a); err != nil {
			// Close: the agent reconnects (with its backoff) and asks
			// again, rather than waiting on a connection that will
			// never provision it.
			as.log.Error("agent provisioning failed; closing its connection", "host", id, "err", err)
			session.Close()
		}
	}
	select {
	case <-session.Done():
	case <-ctx.Done():
		session.Close()
		<-session.Done()
	}
	as.unregister(a)
	as.log.Info("agent disconnected", "host", id, "remote", remote.String(), "serial", a.serial(), "err", session.Err())
}

// register adds a, closing the session of an earlier connection of the
// same host.
func (as *agents) register(a *agent) {
	as.mu.Lock()
	old := as.byID[a.hostID]
	as.byID[a.hostID] = a
	as.mu.Unlock()
	if old != nil {
		as.log.Info("agent replaced by a new connection", "host", a.hostID, "old_remote", old.remote.String(), "old_serial", old.serial())
		old.session.Close()
	}
}

// unregister removes a unless a newer connection replaced it.
func (as *agents) unregister(a *agent) {
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.byID[a.hostID] == a {
		delete(as.byID, a.hostID)
	}
}

// get returns the agent connected under id.
func (as *agents) get(id string) *agent {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.byID[id]
}

// bySerial returns the agent whose connection presented the certificate
// of that serial.
func (as *agents) bySerial(serial string) *agent {
	as.mu.Lock()
	defer as.mu.Unlock()
	for _, a := range as.byID {
		if a.serial() == serial {
			return a
		}
	}
	return nil
}

// list returns the connected agents by host id.
func (as *agents) list() []*agent {
	as.mu.Lock()
	out := make([]*agent, 0, len(as.byID))
	for _, a := range as.byID {
		out = append(out, a)
	}
	as.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].hostID < out[j].hostID })
	return out
}

// closeAll closes every session, and waits for their goroutines.
func (as *agents) closeAll() {
	for _, a := range as.list() {
		a.session.Close()
	}
	as.wg.Wait()
}

// request is the provisioning request of a: over its own connection,
// with the names of the certificate it connected with.
func (a *agent) request() *ca.ProvisionRequest {
	return &ca.ProvisionRequest{
		Name: a.hostID, Host: ca.NewAgentHost(a.session),
		DNSNames: a.cert.DNSNames, IPAddresses: a.cert.IPAddresses,
	}
}

// provision provisions a over its connection now, then revokes the
// certificate it connected with as superseded (a bootstrap certificate
// is so single-use). A host being provisioned already fails with
// ca.ErrProvisionBusy (the Manager provisions a host once at a time).
func (as *agents) provision(ctx context.Context, a *agent) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, provisionTimeout)
	defer cancel()
	as.log.Info("provisioning agent", "host", a.hostID, "old_serial", a.serial())
	res, err := as.m.Provision(ctx, a.request())
	if err != nil {
		if res != nil { // installed, not reloaded: keep the old one valid
			as.log.Warn("agent holds a new certificate but did not reload", "host", a.hostID,
				"serial", provider.FormatSerial(res.Certificate.SerialNumber), "err", err)
		}
		return nil, err
	}
	newSerial := provider.FormatSerial(res.Certificate.SerialNumber)
	as.log.Info("agent provisioned", "host", a.hostID, "serial", newSerial, "not_after", res.Certificate.NotAfter)
	err = as.m.Revoke(ctx, &ca.RevokeRequest{Certificate: a.cert, Reason: provider.ReasonSuperseded})
	switch {
	case err == nil:
		as.log.Info("revoked the replaced certificate", "host", a.hostID, "serial", a.serial(), "reason", "superseded")
	case errors.Is(err, provider.ErrAlreadyRevoked):
	default:
		// The host has its new certificate: report, do not fail.
		as.log.Error("revoking the replaced certificate failed", "host", a.hostID, "serial", a.serial(), "err", err)
	}
	return res.Certificate, nil
}

// hostFor is the background task's BackgroundOptions.HostFor: the agent
// connected here with that certificate, provisioned over its connection
// with that certificate's names. A certificate no agent here presents is
// only alerted (another management server may hold its agent). A host
// being provisioned already makes the Manager answer ca.ErrProvisionBusy,
// which the task retries quietly.
func (as *agents) hostFor(_ context.Context, rec *provider.CertificateRecord) (*ca.ProvisionRequest, error) {
	if rec.Serial == nil {
		return nil, fmt.Errorf("mgmtserver: inventory record without a serial")
	}
	a := as.bySerial(provider.FormatSerial(rec.Serial))
	if a == nil {
		return nil, nil
	}
	return a.request(), nil
}
