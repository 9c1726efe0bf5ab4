package ca

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Dialer connects an agent to one of the management servers of
// CloudStack's host= list. The zero value needs Credentials.
type Dialer struct {
	// Credentials are the agent's. Required.
	Credentials *AgentCredentials

	// Port is the agent port of servers listed without one. If zero,
	// 8250.
	Port int

	// Attempts is how many connections are tried in all before giving
	// up. If zero, three rounds over the list.
	Attempts int

	// InitialBackoff is the wait after the first failure, doubled after
	// each further one up to MaxBackoff, each wait drawn at random
	// between half and all of it. Zero means 500 ms and 30 s.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration

	// Timeout bounds each attempt's dial and handshake. If zero, 10 s.
	Timeout time.Duration

	// Logger receives one record per failed attempt. If nil, nothing is
	// logged.
	Logger *slog.Logger

	// Rand shuffles the list and draws the jitter. If nil, a generator
	// seeded at random.
	Rand *rand.Rand

	once  sync.Once
	mu    sync.Mutex
	order map[string][]string
}

// DialError reports a dial that failed on every attempt. It unwraps to
// each attempt's error.
type DialError struct {
	Attempts []AttemptError
}

// AttemptError is one attempt's failure.
type AttemptError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string {
	var b strings.Builder
	b.WriteString("ca: no management server reachable")
	for _, a := range e.Attempts {
		fmt.Fprintf(&b, "; %s: %v", a.Addr, a.Err)
	}
	return b.String()
}

// Unwrap returns every attempt's error.
func (e *DialError) Unwrap() []error {
	out := make([]error, len(e.Attempts))
	for i, a := range e.Attempts {
		out[i] = a.Err
	}
	return out
}

// SplitHosts splits CloudStack's comma-separated host= value, dropping
// empty entries and spaces.
func SplitHosts(hosts string) []string {
	var out []string
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// DialContext connects to one of hosts, a host= list ("ms1,ms2:8250,
// [2001:db8::1]"). The list is shuffled once per Dialer, so that agents
// spread over the servers and each keeps its order; on failure the next
// server is tried after a capped exponential backoff with jitter, until
// Attempts are used or ctx is done. Each server's certificate is
// verified for the name or address as listed. The error of a dial that
// found no server is a *DialError holding every attempt's error (and
// ctx's error when it ended the dial).
func (d *Dialer) DialContext(ctx context.Context, hosts string) (*tls.Conn, error) {
	if d.Credentials == nil {
		return nil, fmt.Errorf("%w: Dialer.Credentials is required", ErrNoCredentials)
	}
	list := d.shuffled(hosts)
	if len(list) == 0 {
		return nil, errors.New("ca: empty management server list")
	}
	attempts := d.Attempts
	if attempts <= 0 {
		attempts = 3 * len(list)
	}
	backoff := orDefault(d.InitialBackoff, defaultDialInitialBackoff)
	maxBackoff := orDefault(d.MaxBackoff, defaultDialMaxBackoff)
	var derr DialError
	for i := 0; i < attempts; i++ {
		addr := list[i%len(list)]
		conn, err := d.attempt(ctx, addr)
		if err == nil {
			return conn, nil
		}
		derr.Attempts = append(derr.Attempts, AttemptError{Addr: addr, Err: err})
		if d.Logger != nil {
			d.Logger.Warn("ca: management server unreachable", "addr", addr, "error", err)
		}
		if ctx.Err() != nil || i+1 == attempts {
			break
		}
		wait := backoff/2 + d.jitter(backoff/2)
		backoff = min(2*backoff, maxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			derr.Attempts = append(derr.Attempts, AttemptError{Addr: addr, Err: ctx.Err()})
			return nil, &derr
		case <-t.C:
		}
	}
	return nil, &derr
}

func (d *Dialer) attempt(ctx context.Context, addr string) (*tls.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = strings.Trim(addr, "[]"), strconv.Itoa(orDefault(d.Port, defaultAgentPort))
	}
	cfg, err := d.Credentials.TLSConfig(host)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, orDefault(d.Timeout, defaultDialTimeout))
	defer cancel()
	td := tls.Dialer{Config: cfg}
	c, err := td.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

func (d *Dialer) rnd() *rand.Rand {
	d.once.Do(func() {
		if d.Rand == nil {
			d.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		}
	})
	return d.Rand
}

// jitter draws a duration in [0, max].
func (d *Dialer) jitter(max time.Duration) time.Duration {
	r := d.rnd()
	d.mu.Lock()
	defer d.mu.Unlock()
	return time.Duration(r.Int64N(int64(max) + 1))
}

// shuffled returns hosts in this Dialer's order.
func (d *Dialer) shuffled(hosts string) []string {
	r := d.rnd()
	d.mu.Lock()
	defer d.mu.Unlock()
	if l, ok := d.order[hosts]; ok {
		return l
	}
	l := SplitHosts(hosts)
	r.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
	if d.order == nil {
		d.order = map[string][]string{}
	}
	d.order[hosts] = l
	return l
}
