package libvirttls

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// qmpSeeds returns the QMP lines under testdata/qmp: replies captured
// from QEMU 7.2 and from virsh qemu-monitor-command (libvirt 9.0).
func qmpSeeds(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "qmp", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	seeds := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		seeds[filepath.Base(p)] = b
	}
	return seeds
}

func TestParseQMPReply(t *testing.T) {
	t.Parallel()
	seeds := qmpSeeds(t)
	for _, tc := range []struct {
		name     string
		line     []byte
		greeting bool
		event    string
		ret      string
		class    string
		noVNCTLS bool
		id       string
		wantErr  bool
	}{
		{name: "QEMU 7.2 greeting", line: seeds["greeting-qemu-7.2.json"], greeting: true},
		{name: "return", line: seeds["return.json"], ret: "{}", id: "kvmpki-1"},
		{name: "no VNC display", line: seeds["error-no-vnc.json"], class: "GenericError", noVNCTLS: true, id: "kvmpki-2"},
		{name: "QEMU without display-reload", line: seeds["error-command-not-found.json"], class: "CommandNotFound", id: "kvmpki-2"},
		{name: "event", line: seeds["event-stop.json"], event: "STOP"},
		{name: "virsh: VNC without TLS", line: seeds["virsh-error-no-vnc-tls.json"], class: "GenericError", noVNCTLS: true, id: "libvirt-413"},
		{name: "virsh: return", line: seeds["virsh-return.json"], ret: "{}", id: "libvirt-20"},
		{name: "empty", line: nil, wantErr: true},
		{name: "not JSON", line: []byte("RFB 003.008\n"), wantErr: true},
		{name: "array", line: []byte(`[{"return": {}}]`), wantErr: true},
		{name: "nothing QMP", line: []byte(`{"foo": 1}`), wantErr: true},
		{name: "return and error", line: []byte(`{"return": {}, "error": {"class": "GenericError", "desc": "x"}}`), wantErr: true},
		{name: "greeting and event", line: []byte(`{"QMP": {}, "event": "STOP"}`), wantErr: true},
		{name: "error without class", line: []byte(`{"error": {"desc": "x"}}`), wantErr: true},
		{name: "empty event", line: []byte(`{"event": ""}`), wantErr: true},
		{name: "numeric id", line: []byte(`{"return": {}, "id": 7}`), wantErr: true},
		{name: "two values", line: []byte(`{"return": {}} {"return": {}}`), wantErr: true},
		{name: "too long", line: []byte(`{"return": "` + strings.Repeat("a", maxQMPLine) + `"}`), wantErr: true},
		{name: "null return", line: []byte(`{"return": null}`), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseQMPReply(tc.line)
			if tc.wantErr {
				assert.ErrorIs(t, err, errQMPProtocol)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.greeting, r.greeting)
			assert.Equal(t, tc.event, r.event)
			assert.Equal(t, tc.ret, string(r.ret))
			assert.Equal(t, tc.id, r.id)
			if tc.class == "" {
				assert.Nil(t, r.err)
				return
			}
			require.NotNil(t, r.err)
			assert.Equal(t, tc.class, r.err.Class)
			assert.Equal(t, tc.noVNCTLS, errors.Is(r.err, ErrNoVNCTLS))
			assert.True(t, strings.HasPrefix(r.err.Error(), "libvirttls: qemu: "+tc.class+": "), r.err.Error())
		})
	}
}

func TestQMPErrorDescriptionBounded(t *testing.T) {
	t.Parallel()
	line, err := json.Marshal(map[string]any{"error": map[string]string{"class": "GenericError", "desc": strings.Repeat("é", 4000)}})
	require.NoError(t, err)
	r, err := parseQMPReply(line)
	require.NoError(t, err)
	require.NotNil(t, r.err)
	assert.LessOrEqual(t, len(r.err.Desc), maxQMPDesc+len("…"))
	assert.True(t, strings.HasSuffix(r.err.Desc, "…"))
	assert.True(t, json.Valid([]byte(`"`+r.err.Desc+`"`)), "the cut keeps valid UTF-8")
}

func FuzzParseQMPReply(f *testing.F) {
	for _, b := range qmpSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parseQMPReply(line)
		if err != nil {
			if !errors.Is(err, errQMPProtocol) {
				t.Fatalf("error %v does not wrap errQMPProtocol", err)
			}
			if len(err.Error()) > 4*maxQMPDesc {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		kinds := 0
		for _, set := range []bool{r.greeting, r.event != "", r.ret != nil, r.err != nil} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			t.Fatalf("%d kinds in %+v", kinds, r)
		}
		if r.err != nil && (r.err.Class == "" || len(r.err.Desc) > maxQMPDesc+len("…")) {
			t.Fatalf("bad error %+v", r.err)
		}
	})
}

// scriptedQMP serves one QMP connection on a UNIX socket: it writes
// greeting, then answers each line the client sends with the next entry
// of replies (a function of the request's id), and returns the socket
// path. A nil entry means: read the request, answer nothing.
func scriptedQMP(t *testing.T, greeting string, replies ...func(id string) string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kvmpki-qmptest-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "qmp.sock")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := conn.Write([]byte(greeting)); err != nil {
			return
		}
		r := bufio.NewReader(conn)
		for _, reply := range replies {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var req struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(line, &req)
			if reply == nil {
				continue
			}
			if _, err := conn.Write([]byte(reply(req.ID))); err != nil {
				return
			}
		}
		// Hold the connection until the client closes it.
		_, _ = r.ReadBytes('\n')
	}()
	return path
}

func TestReloadVNCQMPScripted(t *testing.T) {
	t.Parallel()
	const greeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}` + "\n"
	ok := func(id string) string { return `{"return": {}, "id": "` + id + `"}` + "\n" }
	event := `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}` + "\n"
	for _, tc := range []struct {
		name     string
		greeting string
		replies  []func(string) string
		timeout  time.Duration
		check    func(t *testing.T, err error)
	}{
		{name: "reloaded after events", greeting: greeting, replies: []func(string) string{ok, func(id string) string { return event + event + ok(id) }},
			check: func(t *testing.T, err error) { assert.NoError(t, err) }},
		{name: "no VNC TLS", greeting: greeting, replies: []func(string) string{ok, func(id string) string {
			return `{"id": "` + id + `", "error": {"class": "GenericError", "desc": "vnc tls is not enabled"}}` + "\n"
		}}, check: func(t *testing.T, err error) {
			var qe *QMPError
			require.ErrorAs(t, err, &qe)
			assert.Equal(t, "vnc tls is not enabled", qe.Desc)
			assert.ErrorIs(t, err, ErrNoVNCTLS)
		}},
		{name: "QEMU before 6.0", greeting: greeting, replies: []func(string) string{ok, func(id string) string {
			return `{"id": "` + id + `", "error": {"class": "CommandNotFound", "desc": "The command display-reload has not been found"}}` + "\n"
		}}, check: func(t *testing.T, err error) {
			var qe *QMPError
			require.ErrorAs(t, err, &qe)
			assert.Equal(t, "CommandNotFound", qe.Class)
			assert.NotErrorIs(t, err, ErrNoVNCTLS)
		}},
		{name: "capabilities refused", greeting: greeting, replies: []func(string) string{func(id string) string {
			return `{"id": "` + id + `", "error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete"}}` + "\n"
		}}, check: func(t *testing.T, err error) {
			assert.ErrorContains(t, err, "Capabilities negotiation is already complete")
		}},
		{name: "not QMP", greeting: "RFB 003.008\n",
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, errQMPProtocol) }},
		{name: "reply to another id", greeting: greeting, replies: []func(string) string{ok, func(string) string { return ok("other") }},
			check: func(t *testing.T, err error) { assert.ErrorContains(t, err, `reply to id "other"`) }},
		{name: "endless line", greeting: greeting, replies: []func(string) string{ok, func(string) string { return strings.Repeat("x", maxQMPLine+10) }},
			check: func(t *testing.T, err error) { assert.ErrorContains(t, err, "line longer than") }},
		{name: "endless events", greeting: greeting, replies: []func(string) string{ok, func(string) string { return strings.Repeat(event, maxQMPEvents+1) }},
			check: func(t *testing.T, err error) { assert.ErrorContains(t, err, "events before the reply") }},
		{name: "silent QEMU", greeting: greeting, replies: []func(string) string{ok, nil}, timeout: 200 * time.Millisecond,
			check: func(t *testing.T, err error) { assert.ErrorIs(t, err, context.DeadlineExceeded) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := scriptedQMP(t, tc.greeting, tc.replies...)
			ctx := t.Context()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			start := time.Now()
			err := ReloadVNCQMP(ctx, path)
			tc.check(t, err)
			assert.Less(t, time.Since(start), 5*time.Second, "bounded by the context")
		})
	}
}

func TestReloadVNCQMPNoSocket(t *testing.T) {
	t.Parallel()
	err := ReloadVNCQMP(t.Context(), filepath.Join(t.TempDir(), "none.sock"))
	assert.ErrorContains(t, err, "libvirttls: qemu monitor: ")
}

func TestReloadVNCInvalidDomain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		domain string
	}{
		{name: "empty", domain: ""},
		{name: "newline", domain: "a\nb"},
		{name: "NUL", domain: "a\x00b"},
		{name: "not UTF-8", domain: "a\xffb"},
		{name: "too long", domain: strings.Repeat("a", maxDomainName+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// /nonexistent: virsh must not even be run.
			res, err := ReloadVNC(t.Context(), &ReloadVNCOptions{Domains: []string{tc.domain}, Virsh: "/nonexistent/virsh"})
			var ge *GuestError
			require.ErrorAs(t, err, &ge)
			assert.Equal(t, tc.domain, ge.Domain)
			assert.ErrorContains(t, err, "invalid domain name")
			assert.Empty(t, res.Reloaded)
		})
	}
}
