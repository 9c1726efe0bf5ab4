package ca

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// The in-band transport: the provisioning commands on an agent connection,
// for a platform that has no agent protocol of its own to carry them (its
// own protocol implements AgentChannel instead).
//
// On the wire, each message is one JSON object on one line (at most
// maxAgentFrame bytes with its newline): the agent's hello first, then
// commands from the management server and the agent's answers, matched by
// id. Certificates and CSRs are PEM strings; the keystore passphrase and
// private keys never travel.

// AgentHello is what an agent says when it connects, before any command.
type AgentHello struct {
	// HostID is the agent's name for itself, for the server's logs. The
	// server identifies the agent by its verified certificate, never by
	// this.
	HostID string
	// Provision asks the server to provision the agent now, over this
	// connection: an agent that connected with a short-lived bootstrap
	// certificate, or whose keystore was lost, asks for its own.
	Provision bool
}

// ErrAgentSessionClosed means the agent connection closed while a command
// waited for its answer, or before it was sent.
var ErrAgentSessionClosed = errors.New("ca: agent session closed")

// AgentCommandError is an agent's report that a command failed. Message is
// the agent's text, cut to a bounded length.
type AgentCommandError struct {
	Command string
	Message string
}

func (e *AgentCommandError) Error() string {
	return fmt.Sprintf("ca: agent: %s failed: %s", e.Command, e.Message)
}

// AgentSessionOptions tunes NewAgentSession. The zero value (or nil) is
// the default.
type AgentSessionOptions struct {
	// HelloTimeout bounds the wait for the agent's hello, when conn is a
	// net.Conn. If zero, 10 s.
	HelloTimeout time.Duration
}

// AgentSession is the management server's end of an agent connection
// carrying the in-band transport: an [AgentChannel], so
// NewAgentHost(session) provisions the agent over its own connection.
// Commands may be sent from several goroutines; the agent answers them
// one at a time.
type AgentSession struct {
	conn  io.ReadWriteCloser
	hello AgentHello

	wmu sync.Mutex // serializes frames on conn

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan *agentFrame
	err     error // why the session ended; set once
	done    chan struct{}
}

var _ AgentChannel = (*AgentSession)(nil)

// NewAgentSession reads the agent's hello from conn (after the TLS
// handshake the agent port verified) and starts reading its answers.
// The session owns conn: Close closes it, and a read error ends the
// session (Done). A hello that is missing, malformed or too long is an
// error, and conn is closed.
func NewAgentSession(ctx context.Context, conn io.ReadWriteCloser, opts *AgentSessionOptions) (*AgentSession, error) {
	if opts == nil {
		opts = &AgentSessionOptions{}
	}
	s := &AgentSession{conn: conn, pending: map[uint64]chan *agentFrame{}, done: make(chan struct{})}
	r := bufio.NewReaderSize(conn, 4096)
	if nc, ok := conn.(net.Conn); ok {
		_ = nc.SetReadDeadline(time.Now().Add(orDefault(opts.HelloTimeout, defaultHelloTimeout)))
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	f, err := readAgentFrame(r)
	stopped := stop()
	if err == nil && !stopped {
		err = ctx.Err()
	}
	if err == nil {
		s.hello, err = decodeHello(f)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ca: agent hello: %w", err)
	}
	if nc, ok := conn.(net.Conn); ok {
		_ = nc.SetReadDeadline(time.Time{})
	}
	go s.readLoop(r)
	return s, nil
}

// Hello returns what the agent said when it connected.
func (s *AgentSession) Hello() AgentHello { return s.hello }

// Done is closed when the session has ended: the connection closed or
// failed. Err then says why.
func (s *AgentSession) Done() <-chan struct{} { return s.done }

// Err returns why the session ended, nil while it runs.
func (s *AgentSession) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close closes the connection; commands waiting for an answer fail with
// ErrAgentSessionClosed.
func (s *AgentSession) Close() error {
	err := s.conn.Close()
	s.end(ErrAgentSessionClosed)
	return err
}

// end records why the session ended, once, and wakes every waiting Send.
func (s *AgentSession) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	for id, ch := range s.pending {
		close(ch)
		delete(s.pending, id)
	}
	close(s.done)
}

func (s *AgentSession) readLoop(r *bufio.Reader) {
	for {
		f, err := readAgentFrame(r)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = ErrAgentSessionClosed
			} else {
				err = fmt.Errorf("%w: %w", ErrAgentSessionClosed, err)
			}
			s.conn.Close()
			s.end(err)
			return
		}
		if f.Kind != kindAnswer {
			s.conn.Close()
			s.end(fmt.Errorf("%w: agent sent a %q message", ErrAgentSessionClosed, f.Kind))
			return
		}
		s.mu.Lock()
		ch, ok := s.pending[f.ID]
		delete(s.pending, f.ID)
		s.mu.Unlock()
		if ok {
			ch <- f // buffered: never blocks
		}
		// An answer nobody waits for (its Send gave up) is dropped.
	}
}

// Send sends cmd to the agent and waits for its answer, until ctx is
// done or the session ends. A failure the agent reports is an
// *AgentCommandError.
func (s *AgentSession) Send(ctx context.Context, cmd AgentCommand) (AgentAnswer, error) {
	name, body, err := encodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	// A context over before anything is sent leaves the session alone:
	// write closes the connection when its context interrupts it.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan *agentFrame, 1)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return nil, err
	}
	s.nextID++
	id := s.nextID
	s.pending[id] = ch
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}
	if err := s.write(ctx, &agentFrame{ID: id, Kind: kindCommand, Name: name, Body: body}); err != nil {
		forget()
		return nil, err
	}
	select {
	case f, ok := <-ch:
		if !ok {
			return nil, s.Err()
		}
		if f.Error != "" {
			return nil, &AgentCommandError{Command: name, Message: f.Error}
		}
		return decodeAnswer(name, f.Body)
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}

// write sends one frame; a write that ctx interrupts closes the session,
// since a frame may have gone half-way.
func (s *AgentSession) write(ctx context.Context, f *agentFrame) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	err := writeAgentFrame(s.conn, f)
	if !stop() {
		s.end(ErrAgentSessionClosed)
		return ctx.Err()
	}
	if err != nil {
		s.conn.Close()
		s.end(fmt.Errorf("%w: %w", ErrAgentSessionClosed, err))
		return s.Err()
	}
	return nil
}

// AgentHandler answers the management server's commands on the agent:
// with package keystore's Setup for *[SetupKeystoreCommand], its Import
// for *[SetupCertificateCommand], and by making the host's services read
// the new files for *[ReloadCommand]. An error is reported to the server
// as the command's failure (its text travels: keep secrets out of it).
type AgentHandler func(ctx context.Context, cmd AgentCommand) (AgentAnswer, error)

// ServeAgent is the agent's end of the in-band transport: it sends hello
// on conn (the connection to the management server) and answers the
// server's commands with handle, one at a time, until the connection
// closes or ctx is done (then it closes conn). A connection keeps the
// certificate of its handshake, so after answering a ReloadCommand,
// ServeAgent closes conn and returns nil: the caller reconnects with the
// new credentials. Otherwise it returns why the connection ended.
func ServeAgent(ctx context.Context, conn io.ReadWriteCloser, hello AgentHello, handle AgentHandler) error {
	if handle == nil {
		return errors.New("ca: ServeAgent needs a handler")
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fail := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if err := writeAgentFrame(conn, encodeHello(hello)); err != nil {
		return fail(fmt.Errorf("ca: agent hello: %w", err))
	}
	r := bufio.NewReaderSize(conn, 4096)
	for {
		f, err := readAgentFrame(r)
		if err != nil {
			return fail(fmt.Errorf("ca: agent session: %w", err))
		}
		if f.Kind != kindCommand {
			return fmt.Errorf("ca: agent session: server sent a %q message", f.Kind)
		}
		ans := &agentFrame{ID: f.ID, Kind: kindAnswer}
		cmd, err := decodeCommand(f.Name, f.Body)
		var answer AgentAnswer
		if err == nil {
			answer, err = handle(ctx, cmd)
		}
		if err == nil {
			ans.Body, err = encodeAnswer(answer)
		}
		if err != nil {
			ans.Error = boundedText(err.Error())
		}
		if err := writeAgentFrame(conn, ans); err != nil {
			return fail(fmt.Errorf("ca: agent session: %w", err))
		}
		if _, ok := cmd.(*ReloadCommand); ok && ans.Error == "" {
			return nil
		}
	}
}

// Wire format.

const (
	kindHello   = "hello"
	kindCommand = "command"
	kindAnswer  = "answer"

	// agentWireVersion is the version an agent's hello states.
	agentWireVersion = 1
)

type agentFrame struct {
	ID    uint64          `json:"id,omitempty"`
	Kind  string          `json:"kind"`
	Name  string          `json:"name,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
	Error string          `json:"error,omitempty"`
}

type wireHello struct {
	Version   int    `json:"version"`
	HostID    string `json:"hostid,omitempty"`
	Provision bool   `json:"provision,omitempty"`
}

type wireSetup struct {
	DNSNames     []string `json:"dnsnames,omitempty"`
	IPAddresses  []string `json:"ipaddresses,omitempty"`
	KeyAlgorithm string   `json:"keyalgorithm,omitempty"`
	KeySize      int      `json:"keysize,omitempty"`
}

type wireCSR struct {
	CSR string `json:"csr"`
}

type wireInstall struct {
	Certificate    string `json:"certificate"`
	CACertificates string `json:"cacertificates"`
	Serial         string `json:"serial,omitempty"`
}

// readAgentFrame reads one line of at most maxAgentFrame bytes and
// decodes it.
func readAgentFrame(r *bufio.Reader) (*agentFrame, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > maxAgentFrame {
			return nil, fmt.Errorf("message over %d bytes", maxAgentFrame)
		}
		line = append(line, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	var f agentFrame
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("malformed message: %w", err)
	}
	if dec.More() {
		// A second message on the line would be lost unseen.
		return nil, errors.New("malformed message: trailing data")
	}
	if f.Kind == "" {
		return nil, errors.New("malformed message: no kind")
	}
	return &f, nil
}

func writeAgentFrame(w io.Writer, f *agentFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if len(b) > maxAgentFrame {
		return fmt.Errorf("ca: agent message over %d bytes", maxAgentFrame)
	}
	_, err = w.Write(b)
	return err
}

func encodeHello(h AgentHello) *agentFrame {
	body, _ := json.Marshal(wireHello{Version: agentWireVersion, HostID: boundedText(h.HostID), Provision: h.Provision})
	return &agentFrame{Kind: kindHello, Body: body}
}

func decodeHello(f *agentFrame) (AgentHello, error) {
	if f.Kind != kindHello {
		return AgentHello{}, fmt.Errorf("expected a hello, got a %q message", f.Kind)
	}
	var w wireHello
	if err := strictUnmarshal(f.Body, &w); err != nil {
		return AgentHello{}, err
	}
	if w.Version != agentWireVersion {
		return AgentHello{}, fmt.Errorf("agent speaks version %d, not %d", w.Version, agentWireVersion)
	}
	return AgentHello{HostID: boundedText(w.HostID), Provision: w.Provision}, nil
}

func encodeCommand(cmd AgentCommand) (string, json.RawMessage, error) {
	var v any
	switch c := cmd.(type) {
	case *SetupKeystoreCommand:
		if c == nil {
			return "", nil, errors.New("ca: nil command")
		}
		w := wireSetup{DNSNames: c.Setup.DNSNames, KeySize: c.Setup.KeySize}
		if c.Setup.KeyAlgorithm != provider.KeyAlgorithmDefault {
			w.KeyAlgorithm = c.Setup.KeyAlgorithm.String()
		}
		for _, ip := range c.Setup.IPAddresses {
			w.IPAddresses = append(w.IPAddresses, ip.String())
		}
		v = w
	case *SetupCertificateCommand:
		if c == nil {
			return "", nil, errors.New("ca: nil command")
		}
		v = wireInstall{Certificate: string(c.Install.CertificatePEM), CACertificates: string(c.Install.CABundlePEM), Serial: c.Install.Serial}
	case *ReloadCommand:
		v = struct{}{}
	default:
		return "", nil, fmt.Errorf("ca: unknown agent command %T", cmd)
	}
	b, err := json.Marshal(v)
	return cmd.commandName(), b, err
}

// decodeCommand decodes a command the server sent; what an agent does
// with it must not depend on anything the decoder did not check.
func decodeCommand(name string, body []byte) (AgentCommand, error) {
	switch name {
	case "SetupKeystoreCommand":
		var w wireSetup
		if err := strictUnmarshal(body, &w); err != nil {
			return nil, err
		}
		c := &SetupKeystoreCommand{Setup: KeystoreSetup{DNSNames: w.DNSNames, KeySize: w.KeySize}}
		for _, s := range w.IPAddresses {
			ip := net.ParseIP(s)
			if ip == nil {
				return nil, fmt.Errorf("ipaddresses: %q is not an IP address", boundedText(s))
			}
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			c.Setup.IPAddresses = append(c.Setup.IPAddresses, ip)
		}
		if w.KeyAlgorithm != "" {
			alg, err := provider.ParseKeyAlgorithm(w.KeyAlgorithm)
			if err != nil {
				return nil, err
			}
			c.Setup.KeyAlgorithm = alg
		}
		return c, nil
	case "SetupCertificateCommand":
		var w wireInstall
		if err := strictUnmarshal(body, &w); err != nil {
			return nil, err
		}
		if w.Certificate == "" || w.CACertificates == "" {
			return nil, errors.New("SetupCertificateCommand needs certificate and cacertificates")
		}
		return &SetupCertificateCommand{Install: CertificateInstall{
			CertificatePEM: []byte(w.Certificate), CABundlePEM: []byte(w.CACertificates), Serial: boundedText(w.Serial),
		}}, nil
	case "ReloadCommand":
		if err := strictUnmarshal(body, &struct{}{}); err != nil {
			return nil, err
		}
		return &ReloadCommand{}, nil
	}
	return nil, fmt.Errorf("unknown command %q", boundedText(name))
}

func encodeAnswer(a AgentAnswer) (json.RawMessage, error) {
	switch v := a.(type) {
	case *SetupKeystoreAnswer:
		if v == nil {
			return nil, errors.New("nil answer")
		}
		return json.Marshal(wireCSR{CSR: string(v.CSRPEM)})
	case *SetupCertificateAnswer, *ReloadAnswer:
		if isNilPointer(a) {
			return nil, errors.New("nil answer")
		}
		return json.Marshal(struct{}{})
	}
	return nil, fmt.Errorf("unknown answer %T", a)
}

// decodeAnswer decodes the agent's answer to the command named name.
func decodeAnswer(name string, body []byte) (AgentAnswer, error) {
	switch name {
	case "SetupKeystoreCommand":
		var w wireCSR
		if err := strictUnmarshal(body, &w); err != nil {
			return nil, fmt.Errorf("ca: agent: %s answer: %w", name, err)
		}
		return &SetupKeystoreAnswer{CSRPEM: []byte(w.CSR)}, nil
	case "SetupCertificateCommand", "ReloadCommand":
		if err := strictUnmarshal(body, &struct{}{}); err != nil {
			return nil, fmt.Errorf("ca: agent: %s answer: %w", name, err)
		}
		if name == "ReloadCommand" {
			return &ReloadAnswer{}, nil
		}
		return &SetupCertificateAnswer{}, nil
	}
	return nil, fmt.Errorf("ca: agent: answer to unknown command %q", name)
}

// strictUnmarshal decodes one JSON object (an absent body is an empty
// one), refusing unknown fields and trailing data.
func strictUnmarshal(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed body: %w", err)
	}
	if dec.More() {
		return errors.New("malformed body: trailing data")
	}
	return nil
}

// boundedText cuts a peer's text to maxAgentText bytes.
func boundedText(s string) string {
	if len(s) <= maxAgentText {
		return s
	}
	return s[:maxAgentText] + "..."
}
