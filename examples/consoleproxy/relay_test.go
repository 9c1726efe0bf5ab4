package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"image"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

// TestBackEnd drives the WebSocket endpoint with a Go viewer (rfb.Client
// with security None over the WebSocket) against rfbtest servers: an
// X509Vnc back end is reported encrypted from its TLS state and relayed
// pixel for pixel; a back end offering only unencrypted methods, however
// its desktop name reads, and one whose certificate does not carry the
// token's server name are refused with the page's error, never shown as
// encrypted (CloudStack weaknesses #10 and #11).
func TestBackEnd(t *testing.T) {
	f := newPKI(t)
	k, err := NewTokens([]byte("relay test secret, 32 bytes or more"))
	require.NoError(t, err)
	p := &proxy{tokens: k, roots: f.roots, clientCert: f.proxyTLSCertificate, log: discardLogger(), now: time.Now, dialTimeout: 5 * time.Second}
	srv := httptest.NewServer(p.handler())
	defer srv.Close()

	const password = "pw"
	tlsServer := &tls.Config{Certificates: []tls.Certificate{f.hostTLSCertificate}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: f.roots}
	secure := rfbtest.NewServer(&rfbtest.Config{Security: []rfb.Security{rfb.SecurityX509Vnc}, TLSConfig: tlsServer, Password: []byte(password),
		Width: 64, Height: 48, Name: "vm-42"})
	defer secure.Close()
	plain := rfbtest.NewServer(&rfbtest.Config{Security: []rfb.Security{rfb.SecurityNone, rfb.SecurityVNCAuth}, Password: []byte(password),
		Name: "vm-42 (TLS backend)"})
	defer plain.Close()

	open := func(t *testing.T, addr, serverName string) (*websocket.Conn, status) {
		t.Helper()
		host, portStr, _ := strings.Cut(addr, ":")
		port, _ := strconv.Atoi(portStr)
		tok, err := k.Mint(Target{Host: host, Port: port, ServerName: serverName, Password: password}, time.Now(), time.Minute)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/websockify?token="+tok, nil)
		require.NoError(t, err)
		typ, b, err := ws.Read(ctx)
		require.NoError(t, err)
		require.Equal(t, websocket.MessageText, typ)
		var st status
		require.NoError(t, json.Unmarshal(b, &st))
		return ws, st
	}

	t.Run("X509Vnc relayed", func(t *testing.T) {
		ws, st := open(t, secure.Addr, "localhost")
		defer ws.CloseNow()
		require.Empty(t, st.Error)
		assert.True(t, st.Encrypted)
		assert.Equal(t, "RFB 3.8", st.Protocol)
		assert.Equal(t, "VeNCrypt X509Vnc (261)", st.Security)
		assert.Equal(t, "TLS 1.3", st.TLSVersion)
		assert.Equal(t, "CN=localhost", st.Server)
		assert.Equal(t, "vm-42", st.Desktop)

		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c, err := rfb.Client(ctx, websocket.NetConn(t.Context(), ws, websocket.MessageBinary), &rfb.Config{Security: []rfb.Security{rfb.SecurityNone}})
		require.NoError(t, err)
		defer c.Close()
		assert.Equal(t, "vm-42", c.DesktopName())
		img, err := rfb.Screenshot(ctx, c)
		require.NoError(t, err)
		want := rfbtest.TestPattern(64, 48)
		assert.Equal(t, image.Rect(0, 0, 64, 48), img.Bounds())
		assert.Zero(t, imageDiff(img.ToRGBA(), want))
	})

	for _, tc := range []struct{ name, addr, serverName, want string }{
		{name: "unencrypted back end named (TLS backend)", addr: plain.Addr, serverName: "localhost", want: "the VM's console server offers no encrypted connection"},
		{name: "wrong server name", addr: secure.Addr, serverName: "kvm9.example.org", want: "the VM's console server presented an untrusted certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, st := open(t, tc.addr, tc.serverName)
			defer ws.CloseNow()
			assert.Equal(t, tc.want, st.Error)
			assert.False(t, st.Encrypted)
			assert.Empty(t, st.TLSVersion)
			_, _, err := ws.Read(t.Context())
			assert.Equal(t, websocket.StatusInternalError, websocket.CloseStatus(err))
		})
	}
}
