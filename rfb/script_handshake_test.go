package rfb_test

import (
	"context"
	"crypto/tls"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

// TestHandshakeScripted runs the client against byte-exact server
// scripts, for the failures a well-behaved in-process server cannot
// produce, and checks what the client wrote.
func TestHandshakeScripted(t *testing.T) {
	t.Parallel()
	serverInit := func(bpp byte, w, h uint16, nameLen []byte) []byte {
		pf, _ := rfbtest.QEMUPixelFormat().AppendBinary(nil)
		pf[0] = bpp
		return append(append([]byte{byte(w >> 8), byte(w), byte(h >> 8), byte(h)}, pf...), nameLen...)
	}
	none38 := "RFB 003.008\n\x01\x01\x00\x00\x00\x00"
	tests := []struct {
		name      string
		script    string
		cfg       *rfb.Config
		wantIs    error
		wantAs    any
		wantText  string
		wantWrote string // prefix of what the client sent
	}{
		{name: "not RFB", script: "HTTP/1.1 400\n", wantIs: rfb.ErrProtocol, wantText: `not "RFB xxx.yyy\n"`},
		{name: "RFB 2", script: "RFB 002.000\n", wantIs: rfb.ErrProtocol, wantText: "3.3 or later is required"},
		{name: "3.5 answered as 3.3", script: "RFB 003.005\n\x00\x00\x00\x00", wantAs: new(*rfb.RefusedError), wantText: "without a reason", wantWrote: "RFB 003.003\n"},
		{name: "3.7 answered as 3.7", script: "RFB 003.007\n\x00\x00\x00\x00\x02no", wantAs: new(*rfb.RefusedError), wantText: `"no"`, wantWrote: "RFB 003.007\n"},
		{name: "Apple's 3.889 answered as 3.8", script: "RFB 003.889\n\x00\x00\x00\x00\x02no", wantAs: new(*rfb.RefusedError), wantWrote: "RFB 003.008\n"},
		{name: "refused with a reason", script: "RFB 003.008\n\x00\x00\x00\x00\x0eno connections", wantAs: new(*rfb.RefusedError), wantText: `"no connections"`},
		{name: "TigerVNC blacklist", script: "RFB 003.003\n\x00\x00\x00\x00\x00\x00\x00\x1aToo many security failures", wantAs: new(*rfb.RefusedError), wantText: "Too many security failures"},
		{name: "reason over the limit", script: "RFB 003.008\n\x00\x7f\xff\xff\xff", wantIs: rfb.ErrProtocol, wantText: "reason of 2147483647 bytes exceeds the limit"},
		{name: "VeNCrypt 0.1", script: "RFB 003.008\n\x01\x13\x00\x01", wantIs: rfb.ErrProtocol, wantText: "VeNCrypt 0.1; 0.2 is required", wantWrote: "RFB 003.008\n\x13\x00\x02"},
		{name: "VeNCrypt version refused", script: "RFB 003.008\n\x01\x13\x00\x02\x01", wantIs: rfb.ErrProtocol, wantText: "refused VeNCrypt 0.2 (ack 1)"},
		{name: "no subtypes", script: "RFB 003.008\n\x01\x13\x00\x02\x00\x00", wantAs: new(*rfb.RefusedError), wantText: "VeNCrypt offered no subtype"},
		{name: "subtype refused, QEMU style", script: "RFB 003.008\n\x01\x13\x00\x02\x00\x01\x00\x00\x01\x05\x00", wantIs: rfb.ErrProtocol, wantText: "refused VeNCrypt subtype VeNCrypt X509Vnc (261) (ack 0)", wantWrote: "RFB 003.008\n\x13\x00\x02\x00\x00\x01\x05"},
		{name: "cut short", script: "RFB 003.008\n\x01", wantIs: io.ErrUnexpectedEOF, wantText: "reading security types"},
		{name: "3.3 None", script: "RFB 003.003\n\x00\x00\x00\x01" + string(serverInit(32, 1, 1, []byte{0, 0, 0, 0})), cfg: noneConfig(), wantWrote: "RFB 003.003\n\x01"},
		{name: "3.3 server picks an unaccepted type", script: "RFB 003.003\n\x00\x00\x00\x01", wantAs: new(*rfb.NoSecurityError), wantText: "server offers [None (1)]"},
		{name: "bad pixel format", script: none38 + string(serverInit(24, 8, 8, nil)), cfg: noneConfig(), wantIs: rfb.ErrProtocol, wantText: "24 bits per pixel"},
		{name: "framebuffer over the limit", script: none38 + string(serverInit(32, 0xffff, 0xffff, nil)), cfg: noneConfig(), wantIs: rfb.ErrProtocol, wantText: "65535x65535 exceeds the limit"},
		{name: "name over the limit", script: none38 + string(serverInit(32, 8, 8, []byte{0xff, 0xff, 0xff, 0xff})), cfg: noneConfig(), wantIs: rfb.ErrProtocol, wantText: "desktop name of 4294967295 bytes"},
		{name: "None in 3.8 failing", script: "RFB 003.008\n\x01\x01\x00\x00\x00\x01\x00\x00\x00\x04nope", cfg: noneConfig(), wantIs: rfb.ErrAuthFailed, wantText: `"nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg == nil {
				cfg = &rfb.Config{TLSConfig: &tls.Config{ServerName: "localhost"}}
			}
			conn := newScriptConn([]byte(tc.script))
			c, err := rfb.Client(context.Background(), conn, cfg)
			if tc.wantIs == nil && tc.wantAs == nil && tc.wantText == "" {
				require.NoError(t, err)
				assert.NotNil(t, c)
			} else {
				require.Error(t, err)
				assert.Regexp(t, "^rfb: ", err.Error())
			}
			if tc.wantIs != nil {
				assert.ErrorIs(t, err, tc.wantIs)
			}
			if tc.wantAs != nil {
				assert.ErrorAs(t, err, tc.wantAs)
			}
			if tc.wantText != "" {
				assert.ErrorContains(t, err, tc.wantText)
			}
			if tc.wantWrote != "" {
				assert.Equal(t, tc.wantWrote, conn.w.String()[:min(len(tc.wantWrote), conn.w.Len())])
			}
		})
	}
}
