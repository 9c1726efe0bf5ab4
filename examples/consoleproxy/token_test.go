package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fuzzSecret is the token secret of the seeds in testdata/fuzz; the
// seeds were minted at fuzzNow.
var (
	fuzzSecret = []byte("kvmpki consoleproxy fuzz secret, not a real one")
	fuzzNow    = time.Unix(1_800_000_000, 0)
)

var testTarget = Target{Host: "kvm1.example.org", Port: 5901, ServerName: "kvm1.example.org", Password: "s3cretpw"}

func newTestTokens(t testing.TB) *Tokens {
	t.Helper()
	k, err := NewTokens(fuzzSecret)
	require.NoError(t, err)
	return k
}

// TestTokens: a token opens its own target once, while current, and
// nothing else; an expired, altered, foreign or reused one is refused
// with its reason.
func TestTokens(t *testing.T) {
	now := fuzzNow
	k := newTestTokens(t)
	other, err := NewTokens(bytes.Repeat([]byte{7}, 32))
	require.NoError(t, err)
	mint := func(t *testing.T, k *Tokens, at time.Time, ttl time.Duration) string {
		tok, err := k.Mint(testTarget, at, ttl)
		require.NoError(t, err)
		return tok
	}
	// alter changes one byte of the sealed part, keeping it base64url.
	alter := func(tok string, i int) string {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, tokenPrefix))
		require.NoError(t, err)
		raw[i] ^= 0x01
		return tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	}

	cases := []struct {
		name    string
		token   func(t *testing.T) string
		at      time.Time
		wantErr error
	}{
		{name: "current", token: func(t *testing.T) string { return mint(t, k, now, time.Minute) }, at: now.Add(59 * time.Second)},
		{name: "expired", token: func(t *testing.T) string { return mint(t, k, now, time.Minute) }, at: now.Add(time.Minute), wantErr: errTokenExpired},
		{name: "issued in the future", token: func(t *testing.T) string { return mint(t, k, now.Add(time.Hour), time.Minute) }, at: now, wantErr: errTokenExpired},
		{name: "other key", token: func(t *testing.T) string { return mint(t, other, now, time.Minute) }, at: now, wantErr: errTokenInvalid},
		{name: "nonce altered", token: func(t *testing.T) string { return alter(mint(t, k, now, time.Minute), 0) }, at: now, wantErr: errTokenInvalid},
		{name: "ciphertext altered", token: func(t *testing.T) string { return alter(mint(t, k, now, time.Minute), 20) }, at: now, wantErr: errTokenInvalid},
		{name: "tag altered", token: func(t *testing.T) string {
			tok := mint(t, k, now, time.Minute)
			raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, tokenPrefix))
			return alter(tok, len(raw)-1)
		}, at: now, wantErr: errTokenInvalid},
		{name: "prefix changed", token: func(t *testing.T) string {
			return "v2." + strings.TrimPrefix(mint(t, k, now, time.Minute), tokenPrefix)
		}, at: now, wantErr: errTokenInvalid},
		{name: "truncated", token: func(t *testing.T) string { return mint(t, k, now, time.Minute)[:20] }, at: now, wantErr: errTokenInvalid},
		{name: "empty", token: func(*testing.T) string { return "" }, at: now, wantErr: errTokenInvalid},
		{name: "not base64", token: func(*testing.T) string { return "v1.***" }, at: now, wantErr: errTokenInvalid},
		{name: "too long", token: func(*testing.T) string { return tokenPrefix + strings.Repeat("A", maxTokenLen) }, at: now, wantErr: errTokenInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k.Open(tc.token(t), tc.at)
			if tc.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, testTarget, got)
				return
			}
			assert.ErrorIs(t, err, tc.wantErr)
			assert.Zero(t, got)
			assert.True(t, strings.HasPrefix(err.Error(), "consoleproxy: "), err.Error())
		})
	}

	t.Run("single use, and expired after", func(t *testing.T) {
		tok := mint(t, k, now, time.Minute)
		_, err := k.Open(tok, now)
		require.NoError(t, err)
		_, err = k.Open(tok, now.Add(time.Second))
		assert.ErrorIs(t, err, errTokenUsed)
		_, err = k.Open(tok, now.Add(2*time.Minute))
		assert.ErrorIs(t, err, errTokenExpired)
	})

	t.Run("mint refuses", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			target Target
			ttl    time.Duration
		}{
			{"no host", Target{Port: 5900, ServerName: "a"}, time.Minute},
			{"port 0", Target{Host: "a", ServerName: "a"}, time.Minute},
			{"port 65536", Target{Host: "a", Port: 65536, ServerName: "a"}, time.Minute},
			{"no server name", Target{Host: "a", Port: 5900}, time.Minute},
			{"long password", Target{Host: "a", Port: 5900, ServerName: "a", Password: strings.Repeat("p", 65)}, time.Minute},
			{"lifetime too long", testTarget, maxTokenTTL + time.Second},
			{"no lifetime", testTarget, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := k.Mint(tc.target, now, tc.ttl)
				assert.ErrorContains(t, err, "consoleproxy: minting a token: ")
			})
		}
	})

	t.Run("password is not readable in the token", func(t *testing.T) {
		tok := mint(t, k, now, time.Minute)
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, tokenPrefix))
		require.NoError(t, err)
		assert.NotContains(t, string(raw), testTarget.Password)
		assert.NotContains(t, string(raw), testTarget.Host)
	})
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		data    []byte
		perm    os.FileMode
		wantErr string
	}{
		{name: "ok", data: bytes.Repeat([]byte{1}, 32), perm: 0o600},
		{name: "readable by group", data: bytes.Repeat([]byte{1}, 32), perm: 0o640, wantErr: "others may read it"},
		{name: "short", data: bytes.Repeat([]byte{1}, 31), perm: 0o600, wantErr: "token secret has 31 bytes, want at least 32"},
		{name: "large", data: bytes.Repeat([]byte{1}, 4097), perm: 0o600, wantErr: "larger than 4096 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			require.NoError(t, os.WriteFile(path, tc.data, 0o600))
			require.NoError(t, os.Chmod(path, tc.perm))
			k, err := LoadTokens(path)
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.NotNil(t, k)
				return
			}
			assert.ErrorContains(t, err, tc.wantErr)
		})
	}
	_, err := LoadTokens(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// TestRefusedTokenNoBackendConnection: the WebSocket endpoint refuses an
// expired, altered or reused token with a JSON error and close code 1008
// before it connects to the target, which sees no connection at all.
func TestRefusedTokenNoBackendConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	_, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	target := Target{Host: "127.0.0.1", Port: port, ServerName: "localhost"}

	k := newTestTokens(t)
	now := time.Now()
	p := &proxy{tokens: k, log: discardLogger(), now: func() time.Time { return now }, dialTimeout: 2 * time.Second}
	srv := httptest.NewServer(p.handler())
	defer srv.Close()

	open := func(t *testing.T, token string) (status, websocket.StatusCode) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/websockify?token="+token, nil)
		require.NoError(t, err)
		defer ws.CloseNow()
		typ, b, err := ws.Read(ctx)
		require.NoError(t, err)
		require.Equal(t, websocket.MessageText, typ)
		var st status
		require.NoError(t, json.Unmarshal(b, &st))
		_, _, err = ws.Read(ctx)
		return st, websocket.CloseStatus(err)
	}
	mint := func(at time.Time) string {
		tok, err := k.Mint(target, at, time.Minute)
		require.NoError(t, err)
		return tok
	}
	used := mint(now.Add(-30 * time.Second))
	_, err = k.Open(used, now)
	require.NoError(t, err)
	expired := mint(now.Add(-2 * time.Minute))
	_, err = k.Open(expired, now.Add(-90*time.Second)) // used while current
	require.NoError(t, err)

	for _, tc := range []struct{ name, token, want string }{
		{name: "expired", token: mint(now.Add(-61 * time.Second)), want: "console link expired: open the console again from the portal"},
		{name: "altered", token: mint(now)[:40] + "A" + mint(now)[41:], want: "invalid console link"},
		{name: "other key", token: func() string {
			o, _ := NewTokens(bytes.Repeat([]byte{9}, 32))
			tok, _ := o.Mint(target, now, time.Minute)
			return tok
		}(), want: "invalid console link"},
		{name: "used", token: used, want: "console link already used: open the console again from the portal"},
		{name: "replayed after expiry", token: expired, want: "console link expired: open the console again from the portal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, code := open(t, tc.token)
			assert.Equal(t, tc.want, st.Error)
			assert.False(t, st.Encrypted)
			assert.Equal(t, websocket.StatusPolicyViolation, code)
		})
	}
	assert.Zero(t, accepted.Load(), "connections to the target")

	// The counter works: a current token reaches the target (which
	// hangs up, so the page gets an error, and not the encrypted flag).
	st, code := open(t, mint(now))
	assert.Equal(t, "cannot connect to the VM's console", st.Error)
	assert.Equal(t, websocket.StatusInternalError, code)
	assert.EqualValues(t, 1, accepted.Load())
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
