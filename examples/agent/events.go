package main

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// The events the agent prints (see the package doc).
const (
	evConnected    = "connected"
	evDisconnected = "disconnected"
	evRefused      = "refused"
	evUnreachable  = "unreachable"
	evCommand      = "command"
	evProvisioned  = "provisioned"
	evReloaded     = "reloaded"
)

// event is one line of the agent's standard output.
type event struct {
	Time      time.Time `json:"-"`
	Event     string    `json:"event"`
	Server    string    `json:"server,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	Bootstrap bool      `json:"bootstrap,omitempty"`
	Command   string    `json:"command,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// eventLine is event as printed: time first, as RFC 3339 in UTC.
type eventLine struct {
	Time string `json:"time"`
	event
}

// events writes events as JSON lines, one Write per line, so that lines
// from several goroutines never interleave.
type events struct {
	mu sync.Mutex
	w  io.Writer
}

// emit prints ev, stamped now unless ev.Time is set. A failed write is
// dropped: the events are a report, and the agent keeps running without
// its reader.
func (e *events) emit(ev event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	b, err := json.Marshal(eventLine{Time: ev.Time.UTC().Format(time.RFC3339Nano), event: ev})
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.w.Write(append(b, '\n'))
}
