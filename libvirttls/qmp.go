package libvirttls

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Just enough of the QEMU Machine Protocol (QMP, docs/interop/qmp-spec)
// to send one command: the greeting, capabilities negotiation, the
// command and its reply, with asynchronous events skipped. Every line
// QEMU sends is bounded (maxQMPLine), and so is the number of events
// skipped while waiting for a reply (maxQMPEvents).

// QMPError is an error reply from QEMU's monitor:
// {"error": {"class": CLASS, "desc": DESC}}. It wraps [ErrNoVNCTLS] when
// QEMU says the guest has no VNC server with TLS credentials.
type QMPError struct {
	// Class is QEMU's error class, such as "GenericError" or
	// "CommandNotFound" (QEMU before 6.0 has no display-reload).
	Class string
	// Desc is QEMU's description, cut to maxQMPDesc bytes.
	Desc string
}

func (e *QMPError) Error() string {
	return "libvirttls: qemu: " + e.Class + ": " + e.Desc
}

// Unwrap returns ErrNoVNCTLS for the errors QEMU's display-reload gives
// a guest without a VNC server ("Can not find vnc display") or without
// VNC TLS ("vnc tls is not enabled"), and nil otherwise.
func (e *QMPError) Unwrap() error {
	if e.Class == "GenericError" && (e.Desc == "vnc tls is not enabled" || e.Desc == "Can not find vnc display") {
		return ErrNoVNCTLS
	}
	return nil
}

// qmpReply is one line QEMU sent on its monitor: exactly one of the
// greeting, an event, a command's return value or its error.
type qmpReply struct {
	greeting bool
	event    string
	ret      json.RawMessage
	err      *QMPError
	id       string
}

// errQMPProtocol marks a line that is not QMP.
var errQMPProtocol = errors.New("libvirttls: qemu monitor: protocol error")

// parseQMPReply decodes one line of QMP output. A line that is not one
// JSON object holding exactly one of "QMP", "event", "return" and
// "error" is refused with an error wrapping errQMPProtocol.
func parseQMPReply(line []byte) (qmpReply, error) {
	line = bytes.TrimSpace(line)
	if len(line) > maxQMPLine {
		return qmpReply{}, fmt.Errorf("%w: line of %d bytes exceeds %d", errQMPProtocol, len(line), maxQMPLine)
	}
	var raw struct {
		QMP    json.RawMessage `json:"QMP"`
		Event  *string         `json:"event"`
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
		ID json.RawMessage `json:"id"`
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&raw); err != nil {
		return qmpReply{}, fmt.Errorf("%w: %s: %v", errQMPProtocol, quoteClip(line), err)
	}
	if dec.More() {
		return qmpReply{}, fmt.Errorf("%w: more than one JSON value on a line", errQMPProtocol)
	}
	var r qmpReply
	kinds := 0
	if raw.QMP != nil && !bytes.Equal(raw.QMP, []byte("null")) {
		r.greeting = true
		kinds++
	}
	if raw.Event != nil {
		if *raw.Event == "" {
			return qmpReply{}, fmt.Errorf("%w: empty event name", errQMPProtocol)
		}
		r.event = clip(*raw.Event, maxQMPDesc)
		kinds++
	}
	if raw.Return != nil && !bytes.Equal(raw.Return, []byte("null")) {
		r.ret = raw.Return
		kinds++
	}
	if raw.Error != nil {
		if raw.Error.Class == "" {
			return qmpReply{}, fmt.Errorf("%w: error reply without a class", errQMPProtocol)
		}
		r.err = &QMPError{Class: clip(raw.Error.Class, maxQMPDesc), Desc: clip(raw.Error.Desc, maxQMPDesc)}
		kinds++
	}
	if kinds != 1 {
		return qmpReply{}, fmt.Errorf("%w: %s is not one greeting, event, return or error", errQMPProtocol, quoteClip(line))
	}
	if len(raw.ID) > 0 {
		// QEMU echoes the id as sent; this client sends strings.
		var id string
		if err := json.Unmarshal(raw.ID, &id); err != nil {
			return qmpReply{}, fmt.Errorf("%w: id %q is not a string", errQMPProtocol, clip(string(raw.ID), maxQMPDesc))
		}
		r.id = id
	}
	return r, nil
}

// clip cuts s to at most n bytes, marking the cut, without splitting a
// UTF-8 sequence.
// quoteClip quotes a peer's line for an error, bounded after quoting:
// quoting turns each invalid byte into four characters, so clipping the
// raw line alone let a line of such bytes make a 4 KiB error.
func quoteClip(line []byte) string {
	return clip(strconv.Quote(clip(string(line), maxQMPDesc)), maxQMPDesc)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = strings.ToValidUTF8(s[:n], "")
	return s + "…"
}

// qmpClient is a QMP connection past capabilities negotiation. It runs
// one command at a time.
type qmpClient struct {
	conn net.Conn
	r    *bufio.Reader
	next int
}

// dialQMP connects to the QMP socket at path, reads QEMU's greeting and
// leaves capabilities negotiation mode. The connection is closed when ctx
// is done.
func dialQMP(ctx context.Context, path string) (*qmpClient, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("libvirttls: qemu monitor: %w", err)
	}
	c := &qmpClient{conn: conn, r: bufio.NewReaderSize(conn, maxQMPLine+1)}
	line, err := c.readLine(ctx)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("libvirttls: qemu monitor %s: reading the greeting: %w", path, err)
	}
	g, err := parseQMPReply(line)
	if err != nil || !g.greeting {
		conn.Close()
		return nil, fmt.Errorf("%w: %s did not greet with {\"QMP\": ...} (%v)", errQMPProtocol, path, err)
	}
	if _, err := c.execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *qmpClient) Close() error { return c.conn.Close() }

// readLine reads one line of at most maxQMPLine bytes before ctx's
// deadline.
func (c *qmpClient) readLine(ctx context.Context) ([]byte, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(defaultReloadTimeout)
	}
	if err := c.conn.SetReadDeadline(dl); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("%w: line longer than %d bytes", errQMPProtocol, maxQMPLine)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && ok {
			// The read deadline is ctx's: it can fire just before ctx
			// notices.
			return nil, fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
		}
		return nil, err
	}
	return line, nil
}

// execute sends one command with arguments args (nil for none) and
// returns its return value. Events before the reply are skipped, at most
// maxQMPEvents of them; an error reply is a *QMPError.
func (c *qmpClient) execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	c.next++
	id := "kvmpki-" + strconv.Itoa(c.next)
	req := map[string]any{"execute": command, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("libvirttls: qemu monitor: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetWriteDeadline(dl)
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("libvirttls: qemu monitor: %s: %w", command, err)
	}
	for range maxQMPEvents + 1 {
		line, err := c.readLine(ctx)
		if err != nil {
			return nil, fmt.Errorf("libvirttls: qemu monitor: %s: %w", command, err)
		}
		r, err := parseQMPReply(line)
		if err != nil {
			return nil, fmt.Errorf("libvirttls: qemu monitor: %s: %w", command, err)
		}
		switch {
		case r.event != "":
			continue
		case r.greeting:
			return nil, fmt.Errorf("%w: %s: a second greeting", errQMPProtocol, command)
		case r.id != id:
			return nil, fmt.Errorf("%w: %s: reply to id %q, want %q", errQMPProtocol, command, r.id, id)
		case r.err != nil:
			return nil, r.err
		}
		return r.ret, nil
	}
	return nil, fmt.Errorf("%w: %s: more than %d events before the reply", errQMPProtocol, command, maxQMPEvents)
}
