package main

import (
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

const (
	// initialBackoff is the wait before the first reconnection after a
	// connection ended or no server answered; it doubles up to
	// maxBackoff. It is short so that an agent whose connection the
	// server closed (its certificate revoked, the server restarted)
	// learns its fate within a second.
	initialBackoff = 200 * time.Millisecond
	// defaultMaxBackoff caps the wait between reconnections.
	defaultMaxBackoff = 5 * time.Second
	// defaultDialTimeout bounds each connection's dial and handshake.
	defaultDialTimeout = 10 * time.Second
	// defaultGrace is how long after the handshake a connection on which
	// the server sent nothing must stay unrefused to count as accepted.
	// With TLS 1.3 the client's handshake completes before the server
	// has judged its certificate; a refusal arrives as an alert on the
	// first read, a round trip later.
	defaultGrace = 250 * time.Millisecond
)

// run connects and serves until ctx is done, reconnecting forever. It
// returns an error only when the agent has no credentials to start with.
func (a *agent) run(ctx context.Context) error {
	creds, bootstrap, err := a.chooseCredentials(ctx)
	if err != nil {
		return err
	}
	a.use(creds, bootstrap)
	a.log.Info("agent: starting", "hostid", a.hostID, "servers", a.servers, "bootstrap", bootstrap,
		"serial", provider.FormatSerial(creds.Certificate().SerialNumber))
	backoff := initialBackoff
	maxBackoff := orDefault(a.maxBackoff, defaultMaxBackoff)
	for ctx.Err() == nil {
		reloaded, accepted, refused := a.session(ctx)
		if refused {
			a.fallback(ctx)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case reloaded:
			backoff = initialBackoff
			continue // at once, with the new credentials
		case accepted:
			backoff = initialBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, maxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	return nil
}

// session makes one connection and serves it until it ends. reloaded
// says it ended after a ReloadCommand was answered; accepted that the
// server accepted the agent's certificate before it ended; refused that
// the server refused it.
func (a *agent) session(ctx context.Context) (reloaded, accepted, refused bool) {
	d, creds, bootstrap := a.current()
	conn, err := d.DialContext(ctx, a.servers)
	if err != nil {
		if ctx.Err() != nil {
			return false, false, false
		}
		addr, alert := refusal(err)
		if alert != nil {
			a.events.emit(event{Event: evRefused, Server: addr, Serial: serialOf(creds), Bootstrap: bootstrap, Error: alert.Error()})
		} else {
			a.events.emit(event{Event: evUnreachable, Error: err.Error()})
		}
		return false, false, alert != nil
	}
	handshake := time.Now()
	server := conn.RemoteAddr().String()
	serial := serialOf(creds)
	w := &watchedConn{Conn: conn, onAccept: func() {
		a.events.emit(event{Time: handshake, Event: evConnected, Server: server, Serial: serial, Bootstrap: bootstrap})
	}}
	w.timer = time.AfterFunc(orDefault(a.grace, defaultGrace), w.accept)
	err = ca.ServeAgent(ctx, w, ca.AgentHello{HostID: a.hostID, Provision: bootstrap}, a.handle)
	accepted = w.end()
	_, alert := refusal(err)
	switch {
	case err == nil:
		return true, true, false
	case ctx.Err() != nil:
		return false, accepted, false
	case alert != nil:
		a.events.emit(event{Event: evRefused, Server: server, Serial: serial, Bootstrap: bootstrap, Error: alert.Error()})
	default:
		a.events.emit(event{Event: evDisconnected, Server: server, Serial: serial, Bootstrap: bootstrap, Error: err.Error()})
	}
	return false, accepted, alert != nil
}

// serialOf is the serial of the certificate creds present now.
func serialOf(creds *ca.AgentCredentials) string {
	return provider.FormatSerial(creds.Certificate().SerialNumber)
}

// refusal finds, in a dial's or a session's error, a TLS alert the server
// sent: it refused the agent's certificate. addr is the server's, when
// the error is a *ca.DialError.
func refusal(err error) (addr string, alert error) {
	if err == nil {
		return "", nil
	}
	var derr *ca.DialError
	if errors.As(err, &derr) {
		for _, at := range derr.Attempts {
			if _, alert := refusal(at.Err); alert != nil {
				return at.Addr, alert
			}
		}
		return "", nil
	}
	// crypto/tls reports an alert from the peer as a *net.OpError whose
	// Op is "remote error" ("remote error: tls: bad certificate").
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return "", op
	}
	return "", nil
}

// watchedConn tells when the server accepted the agent: the first bytes
// it sends, or the grace timer running out first. A read error before
// either (a refusal) means it did not.
type watchedConn struct {
	*tls.Conn
	timer    *time.Timer
	onAccept func() // called once, when the connection is accepted

	mu    sync.Mutex
	state int // 0: undecided, 1: accepted, 2: ended before accepted
}

// accept marks the connection accepted and calls onAccept, if it was
// undecided. onAccept runs under the lock, so that a Read racing with the
// timer returns only after the connected event is out, and the events of
// the commands it carries come after it.
func (w *watchedConn) accept() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == 0 {
		w.state = 1
		w.onAccept()
	}
}

// end stops the timer and reports whether the connection was accepted.
func (w *watchedConn) end() bool {
	w.timer.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == 0 {
		w.state = 2
	}
	return w.state == 1
}

func (w *watchedConn) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	if n > 0 {
		w.timer.Stop()
		w.accept()
	}
	if err != nil && n == 0 {
		w.end()
	}
	return n, err
}
