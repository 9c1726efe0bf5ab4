package rfb_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

func passwordFunc(p string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(p), nil }
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestHandshake connects with every supported method and version to the
// in-process server and checks the reported security state and a full
// frame.
func TestHandshake(t *testing.T) {
	t.Parallel()
	p := getCA(t, "rfb test CA")
	tests := []struct {
		name       string
		server     rfbtest.Config
		client     rfb.Config
		wantVer    string
		wantSec    rfb.Security
		wantTLS    bool
		wantShared bool
	}{
		{
			name:    "X509Vnc default config",
			server:  rfbtest.Config{Security: []rfb.Security{rfb.SecurityX509Vnc}, TLSConfig: p.serverTLS(), Password: []byte("s3cret")},
			client:  rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc("s3cret")},
			wantVer: "3.8", wantSec: rfb.SecurityX509Vnc, wantTLS: true, wantShared: true,
		},
		{
			name:    "X509Vnc password longer than 8 bytes",
			server:  rfbtest.Config{Security: []rfb.Security{rfb.SecurityX509Vnc}, TLSConfig: p.serverTLS(), Password: []byte("pw2longe")},
			client:  rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc("pw2longer-than8")},
			wantVer: "3.8", wantSec: rfb.SecurityX509Vnc, wantTLS: true, wantShared: true,
		},
		{
			name:    "X509None",
			server:  rfbtest.Config{Security: []rfb.Security{rfb.SecurityX509None}, TLSConfig: p.serverTLS()},
			client:  rfb.Config{TLSConfig: p.clientTLS()},
			wantVer: "3.8", wantSec: rfb.SecurityX509None, wantTLS: true, wantShared: true,
		},
		{
			name:    "X509None over 3.7",
			server:  rfbtest.Config{ProtocolMinor: 7, Security: []rfb.Security{rfb.SecurityX509None}, TLSConfig: p.serverTLS()},
			client:  rfb.Config{TLSConfig: p.clientTLS()},
			wantVer: "3.7", wantSec: rfb.SecurityX509None, wantTLS: true, wantShared: true,
		},
		{
			name:    "X509Plain",
			server:  rfbtest.Config{Security: []rfb.Security{rfb.SecurityX509Plain}, TLSConfig: p.serverTLS(), Username: "admin", Password: []byte("hunter22")},
			client:  rfb.Config{TLSConfig: p.clientTLS(), Username: "admin", Password: passwordFunc("hunter22")},
			wantVer: "3.8", wantSec: rfb.SecurityX509Plain, wantTLS: true, wantShared: true,
		},
		{
			name:    "Plain with the insecure opt-in",
			server:  rfbtest.Config{Security: []rfb.Security{rfb.SecurityPlain}, Username: "admin", Password: []byte("pw")},
			client:  rfb.Config{Security: []rfb.Security{rfb.SecurityPlain}, InsecureAllowPlainPassword: true, Username: "admin", Password: passwordFunc("pw")},
			wantVer: "3.8", wantSec: rfb.SecurityPlain, wantShared: true,
		},
		{
			name:    "None 3.8",
			server:  rfbtest.Config{Security: []rfb.Security{rfb.SecurityNone}},
			client:  rfb.Config{Security: []rfb.Security{rfb.SecurityNone}},
			wantVer: "3.8", wantSec: rfb.SecurityNone, wantShared: true,
		},
		{
			name:    "None 3.7",
			server:  rfbtest.Config{ProtocolMinor: 7, Security: []rfb.Security{rfb.SecurityNone}},
			client:  rfb.Config{Security: []rfb.Security{rfb.SecurityNone}},
			wantVer: "3.7", wantSec: rfb.SecurityNone, wantShared: true,
		},
		{
			name:    "None 3.3",
			server:  rfbtest.Config{ProtocolMinor: 3, Security: []rfb.Security{rfb.SecurityNone}},
			client:  rfb.Config{Security: []rfb.Security{rfb.SecurityNone}},
			wantVer: "3.3", wantSec: rfb.SecurityNone, wantShared: true,
		},
		{
			name:    "VNCAuth 3.3",
			server:  rfbtest.Config{ProtocolMinor: 3, Security: []rfb.Security{rfb.SecurityVNCAuth}, Password: []byte("s3cret")},
			client:  rfb.Config{Security: []rfb.Security{rfb.SecurityVNCAuth}, Password: passwordFunc("s3cret")},
			wantVer: "3.3", wantSec: rfb.SecurityVNCAuth, wantShared: true,
		},
		{
			name:    "VNCAuth 3.8 exclusive",
			server:  rfbtest.Config{Security: []rfb.Security{rfb.SecurityVNCAuth}, Password: []byte("s3cret")},
			client:  rfb.Config{Security: []rfb.Security{rfb.SecurityVNCAuth}, Password: passwordFunc("s3cret"), Exclusive: true},
			wantVer: "3.8", wantSec: rfb.SecurityVNCAuth, wantShared: false,
		},
		{
			name: "client preference wins over server order",
			server: rfbtest.Config{
				Security:  []rfb.Security{rfb.SecurityNone, rfb.SecurityX509None, rfb.SecurityX509Vnc},
				TLSConfig: p.serverTLS(), Password: []byte("s3cret"),
			},
			client:  rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc("s3cret")},
			wantVer: "3.8", wantSec: rfb.SecurityX509Vnc, wantTLS: true, wantShared: true,
		},
		{
			name: "unsupported types and subtypes skipped",
			server: rfbtest.Config{
				Security:   []rfb.Security{rfb.SecurityX509Vnc},
				ExtraTypes: []uint8{16, 30}, ExtraSubtypes: []uint32{258, 263, 0x80000001},
				TLSConfig: p.serverTLS(), Password: []byte("s3cret"),
			},
			client:  rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc("s3cret")},
			wantVer: "3.8", wantSec: rfb.SecurityX509Vnc, wantTLS: true, wantShared: true,
		},
		{
			name:    "future protocol version capped at 3.8",
			server:  rfbtest.Config{ProtocolMinor: 889, Security: []rfb.Security{rfb.SecurityNone}},
			client:  rfb.Config{Security: []rfb.Security{rfb.SecurityNone}},
			wantVer: "3.8", wantSec: rfb.SecurityNone, wantShared: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var shared = make(chan bool, 1)
			tc.server.Handler = func(sc *rfbtest.ServerConn) error {
				shared <- sc.Shared
				return rfbtest.ServeFramebuffer(sc)
			}
			srv := rfbtest.NewServer(&tc.server)
			defer srv.Close()
			ctx := testContext(t)

			c, err := rfb.Dial(ctx, "tcp", srv.Addr, &tc.client)
			require.NoError(t, err, "server: %v", srv.Err())
			defer c.Close()
			st := c.ConnectionState()
			assert.Equal(t, tc.wantVer, st.ProtocolVersion)
			assert.Equal(t, tc.wantSec, st.Security)
			assert.Equal(t, tc.wantTLS, st.Encrypted())
			assert.Equal(t, tc.wantShared, <-shared)
			if tc.wantTLS {
				require.NotNil(t, st.TLS)
				assert.GreaterOrEqual(t, st.TLS.Version, uint16(tls.VersionTLS12))
				require.NotEmpty(t, st.TLS.VerifiedChains)
				assert.Equal(t, "rfb test CA", st.TLS.VerifiedChains[0][1].Subject.CommonName)
				assert.Contains(t, st.String(), "verified by CN=rfb test CA")
			} else {
				assert.Nil(t, st.TLS)
				assert.Contains(t, st.String(), "unencrypted")
			}
			assert.Equal(t, "rfbtest", c.DesktopName())

			img, err := rfb.Screenshot(ctx, c)
			require.NoError(t, err)
			assert.Equal(t, rfbtest.TestPattern(64, 48).Pix, img.ToRGBA().Pix)
		})
	}
}

// TestHandshakeRefused checks every way a handshake can be refused, and
// that each error says why.
func TestHandshakeRefused(t *testing.T) {
	t.Parallel()
	p := getCA(t, "rfb test CA")
	foreign := getCA(t, "foreign CA")
	x509Vnc := rfbtest.Config{Security: []rfb.Security{rfb.SecurityX509Vnc}, TLSConfig: p.serverTLS(), Password: []byte("s3cret")}
	rejectAfterTLS := x509Vnc
	rejectAfterTLS.TLSConfig = &tls.Config{Certificates: []tls.Certificate{p.server.cert}}
	rejectAfterTLS.RejectClientAfterTLS = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no certificate was found")
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: p.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return err
	}

	tests := []struct {
		name      string
		server    rfbtest.Config
		client    rfb.Config
		wantIs    error
		wantAs    any
		wantText  string
		serverErr string
	}{
		{
			name:     "wrong password",
			server:   x509Vnc,
			client:   rfb.Config{TLSConfig: p.clientTLS(), Password: passwordFunc("wrong")},
			wantIs:   rfb.ErrAuthFailed,
			wantAs:   new(*rfb.AuthError),
			wantText: `server says "Authentication failed"`,
		},
		{
			name:     "wrong password 3.3 has no reason",
			server:   rfbtest.Config{ProtocolMinor: 3, Security: []rfb.Security{rfb.SecurityVNCAuth}, Password: []byte("s3cret")},
			client:   rfb.Config{Security: []rfb.Security{rfb.SecurityVNCAuth}, Password: passwordFunc("wrong")},
			wantIs:   rfb.ErrAuthFailed,
			wantText: "rfb: authentication failed",
		},
		{
			name:      "missing client certificate, QEMU style",
			server:    rejectAfterTLS,
			client:    rfb.Config{TLSConfig: &tls.Config{RootCAs: p.roots}, Password: passwordFunc("s3cret")},
			wantIs:    rfb.ErrTLSClientRejected,
			wantText:  "client certificate missing",
			serverErr: "no certificate was found",
		},
		{
			name:      "client certificate from another CA, QEMU style",
			server:    rejectAfterTLS,
			client:    rfb.Config{TLSConfig: &tls.Config{RootCAs: p.roots, Certificates: []tls.Certificate{foreign.client.cert}}, Password: passwordFunc("s3cret")},
			wantIs:    rfb.ErrTLSClientRejected,
			serverErr: "certificate signed by unknown authority",
		},
		{
			name:     "missing client certificate, crypto/tls server",
			server:   x509Vnc,
			client:   rfb.Config{TLSConfig: &tls.Config{RootCAs: p.roots}, Password: passwordFunc("s3cret")},
			wantIs:   rfb.ErrTLSClientRejected,
			wantText: "certificate required",
		},
		{
			name:     "server certificate from another CA",
			server:   x509Vnc,
			client:   rfb.Config{TLSConfig: foreign.clientTLS(), Password: passwordFunc("s3cret")},
			wantIs:   rfb.ErrUnknownAuthority,
			wantAs:   new(x509.UnknownAuthorityError),
			wantText: "rfb: TLS handshake with the VNC server",
		},
		{
			name:     "wrong server name",
			server:   x509Vnc,
			client:   rfb.Config{TLSConfig: &tls.Config{RootCAs: p.roots, Certificates: []tls.Certificate{p.client.cert}, ServerName: "kvm9.example.org"}, Password: passwordFunc("s3cret")},
			wantIs:   rfb.ErrNameMismatch,
			wantAs:   new(x509.HostnameError),
			wantText: "kvm9.example.org",
		},
		{
			name: "server certificate without serverAuth",
			server: rfbtest.Config{Security: []rfb.Security{rfb.SecurityX509None}, TLSConfig: &tls.Config{Certificates: []tls.Certificate{p.issue(t, &x509.Certificate{
				DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}).cert}}},
			client: rfb.Config{TLSConfig: &tls.Config{RootCAs: p.roots, ServerName: "localhost"}},
			wantIs: rfb.ErrIncompatibleUsage,
		},
		{
			name:   "revoked by the VerifyConnection hook",
			server: x509Vnc,
			client: rfb.Config{TLSConfig: func() *tls.Config {
				c := p.clientTLS()
				c.VerifyConnection = func(tls.ConnectionState) error { return fmt.Errorf("hook: %w", rfb.ErrRevoked) }
				return c
			}(), Password: passwordFunc("s3cret")},
			wantIs:   rfb.ErrRevoked,
			wantText: "rfb: TLS handshake with the VNC server",
		},
		{
			name:     "TLS 1.1 server",
			server:   rfbtest.Config{Security: []rfb.Security{rfb.SecurityX509None}, TLSConfig: &tls.Config{Certificates: []tls.Certificate{p.server.cert}, MaxVersion: tls.VersionTLS11}},
			client:   rfb.Config{TLSConfig: &tls.Config{RootCAs: p.roots, MinVersion: tls.VersionTLS10}},
			wantText: "protocol version",
		},
		{
			name:     "only anonymous TLS offered",
			server:   rfbtest.Config{Security: []rfb.Security{rfb.SecurityX509None}, ExtraSubtypes: []uint32{258}, TLSConfig: p.serverTLS()},
			client:   rfb.Config{Security: []rfb.Security{rfb.SecurityX509Vnc}, TLSConfig: p.clientTLS()},
			wantIs:   rfb.ErrAnonymousTLS,
			wantAs:   new(*rfb.NoSecurityError),
			wantText: "man-in-the-middle",
		},
		{
			name:     "default config refuses an unencrypted server",
			server:   rfbtest.Config{Security: []rfb.Security{rfb.SecurityNone, rfb.SecurityVNCAuth}},
			client:   rfb.Config{},
			wantAs:   new(*rfb.NoSecurityError),
			wantText: "server offers [None (1), VNCAuth (2)], client accepts [VeNCrypt X509Vnc (261)",
		},
		{
			name:     "Plain offered but not accepted",
			server:   rfbtest.Config{Security: []rfb.Security{rfb.SecurityPlain}},
			client:   rfb.Config{},
			wantAs:   new(*rfb.NoSecurityError),
			wantText: "would send the password unencrypted",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := rfbtest.NewServer(&tc.server)
			defer srv.Close()
			c, err := rfb.Dial(testContext(t), "tcp", srv.Addr, &tc.client)
			if c != nil {
				c.Close()
			}
			require.Error(t, err)
			assert.Regexp(t, "^rfb: ", err.Error())
			if tc.wantIs != nil {
				assert.ErrorIs(t, err, tc.wantIs)
			}
			if tc.wantAs != nil {
				assert.ErrorAs(t, err, tc.wantAs)
			}
			if tc.wantText != "" {
				assert.ErrorContains(t, err, tc.wantText)
			}
			if tc.serverErr != "" {
				srv.Close()
				assert.ErrorContains(t, srv.Err(), tc.serverErr)
			}
		})
	}
}

// TestConfigRefused checks configurations refused before any byte is
// sent.
func TestConfigRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cfg    rfb.Config
		wantIs error
		text   string
	}{
		{"Plain without opt-in", rfb.Config{Security: []rfb.Security{rfb.SecurityPlain}}, rfb.ErrInsecureConfig, "InsecureAllowPlainPassword"},
		{"anonymous TLS", rfb.Config{Security: []rfb.Security{rfb.SecurityTLSVnc}}, rfb.ErrAnonymousTLS, "TLSVnc (258)"},
		{"unknown method", rfb.Config{Security: []rfb.Security{16}}, nil, "does not implement"},
		{"skip verify without hook", rfb.Config{TLSConfig: &tls.Config{InsecureSkipVerify: true}}, rfb.ErrInsecureConfig, "InsecureSkipVerify would accept any server certificate"},
		// A hook cannot be trusted to check the name: crypto/tls sends
		// no SNI for an IP literal, so ConnectionState.ServerName may
		// be empty, and a hook comparing against it passes any host.
		{"skip verify with VerifyConnection", rfb.Config{TLSConfig: &tls.Config{
			InsecureSkipVerify: true, ServerName: "kvm1.example.org",
			VerifyConnection: func(tls.ConnectionState) error { return nil },
		}}, rfb.ErrInsecureConfig, "InsecureSkipVerify"},
		{"skip verify with VerifyPeerCertificate", rfb.Config{TLSConfig: &tls.Config{
			InsecureSkipVerify:    true,
			VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error { return nil },
		}}, rfb.ErrInsecureConfig, "InsecureSkipVerify"},
		{"skip verify with only unencrypted methods", rfb.Config{
			Security:  []rfb.Security{rfb.SecurityNone},
			TLSConfig: &tls.Config{InsecureSkipVerify: true},
		}, rfb.ErrInsecureConfig, "InsecureSkipVerify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Nothing listens there: the config must fail first.
			_, err := rfb.Dial(t.Context(), "tcp", "127.0.0.1:1", &tc.cfg)
			require.Error(t, err)
			if tc.wantIs != nil {
				assert.ErrorIs(t, err, tc.wantIs)
			}
			assert.ErrorContains(t, err, tc.text)
		})
	}
}

// TestHandshakeContext checks that a server that never answers cannot
// hold Dial beyond its context.
func TestHandshakeContext(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the listener closes
		}
	}()
	for _, tc := range []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		wantIs error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 200*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(200*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			_, err := rfb.Dial(ctx, "tcp", ln.Addr().String(), nil)
			assert.ErrorIs(t, err, tc.wantIs)
			assert.Less(t, time.Since(start), 5*time.Second)
		})
	}
}

// TestClientNeedsServerName checks that Client, which does not know the
// dialled address, refuses to start a TLS subtype without a name to check
// the server certificate against, before sending any byte.
func TestClientNeedsServerName(t *testing.T) {
	t.Parallel()
	p := getCA(t, "rfb test CA")
	for _, tc := range []struct {
		name    string
		cfg     *rfb.Config
		wantErr string
	}{
		{"nil config", nil, "ServerName is empty"},
		{"roots but no name", &rfb.Config{TLSConfig: p.clientTLS()}, "ServerName is empty"},
		{"unencrypted methods only", &rfb.Config{Security: []rfb.Security{rfb.SecurityNone}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := newScriptConn(handshakeNone38())
			_, err := rfb.Client(t.Context(), conn, tc.cfg)
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.wantErr)
			assert.Zero(t, conn.w.Len(), "bytes sent before the refusal")
		})
	}
}

// TestPasswordNotCleared checks that the client never clears the slice
// the password callback returns (issue 11, item 17): a caller that keeps
// its password in one buffer can dial again.
func TestPasswordNotCleared(t *testing.T) {
	t.Parallel()
	p := getCA(t, "rfb test CA")
	tests := []struct {
		name   string
		server rfbtest.Config
		client rfb.Config
	}{
		{"VNCAuth", rfbtest.Config{Security: []rfb.Security{rfb.SecurityVNCAuth}, Password: []byte("s3cret")},
			rfb.Config{Security: []rfb.Security{rfb.SecurityVNCAuth}}},
		{"X509Vnc", rfbtest.Config{Security: []rfb.Security{rfb.SecurityX509Vnc}, TLSConfig: p.serverTLS(), Password: []byte("s3cret")},
			rfb.Config{TLSConfig: p.clientTLS()}},
		{"X509Plain", rfbtest.Config{Security: []rfb.Security{rfb.SecurityX509Plain}, TLSConfig: p.serverTLS(), Username: "u", Password: []byte("s3cret")},
			rfb.Config{TLSConfig: p.clientTLS(), Username: "u"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := rfbtest.NewServer(&tc.server)
			defer srv.Close()
			kept := []byte("s3cret")
			tc.client.Password = func() ([]byte, error) { return kept, nil }
			for range 2 {
				c, err := rfb.Dial(testContext(t), "tcp", srv.Addr, &tc.client)
				require.NoError(t, err, "server: %v", srv.Err())
				require.NoError(t, c.Close())
				assert.Equal(t, "s3cret", string(kept), "the caller's buffer")
			}
		})
	}
}

// TestCloseIdempotent checks that Close releases the connection once and
// that later calls succeed.
func TestCloseIdempotent(t *testing.T) {
	t.Parallel()
	srv := rfbtest.NewServer(nil)
	defer srv.Close()
	c, err := rfb.Dial(testContext(t), "tcp", srv.Addr, noneConfig())
	require.NoError(t, err)
	require.NoError(t, c.Close())
	assert.NoError(t, c.Close())
	assert.NoError(t, c.Close())
}
