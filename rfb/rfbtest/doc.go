// Package rfbtest provides an in-process RFB 3.8 server for testing RFB
// clients, in the spirit of net/http/httptest.
//
// A Server listens on a loopback port and runs the server side of the
// handshake for each connection: protocol version 3.3, 3.7 or 3.8,
// security types None and VNC Authentication, and VeNCrypt 0.2 with the
// Plain and X509 subtypes (X509None, X509Vnc, X509Plain) over
// crypto/tls. After the handshake it hands the connection, as a
// *ServerConn, to Config.Handler, which by default serves
// Config.Image as Raw updates:
//
//	srv := rfbtest.NewServer(&rfbtest.Config{
//		Security:  []rfb.Security{rfb.SecurityX509Vnc},
//		TLSConfig: serverTLS, // certificate, and ClientAuth to require one
//		Password:  []byte("s3cret"),
//	})
//	defer srv.Close()
//	c, err := rfb.Dial(ctx, "tcp", srv.Addr, clientConfig)
//
// The server mimics QEMU where servers differ: it sends QEMU's failure
// reason ("Authentication failed" with a trailing NUL), a SecurityResult
// after X509None even to 3.7 clients, and QEMU's pixel format by default.
// Handshake failures on the server's side are collected and returned by
// Server.Err, so a test can check why the server refused a client.
//
// rfbtest is for tests: it trusts its configuration, keeps no limits on
// what clients send beyond what a test needs, and must not face a
// network.
package rfbtest
