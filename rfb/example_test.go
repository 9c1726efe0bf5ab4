package rfb_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"image/png"
	"net"
	"os"
	"time"

	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

// A console proxy connects to a VM's VNC server the way QEMU protects it:
// VeNCrypt X509Vnc, with the proxy's client certificate, checking the
// hypervisor's certificate against the platform CA, then takes a
// screenshot.
func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	caPEM, _ := os.ReadFile("/etc/pki/CA/cacert.pem")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	proxyCert, err := tls.LoadX509KeyPair("/etc/pki/proxy/clientcert.pem", "/etc/pki/proxy/private/clientkey.pem")
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := rfb.Dial(ctx, "tcp", "kvm1.example.org:5901", &rfb.Config{
		TLSConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{proxyCert}},
		Password: func() ([]byte, error) {
			return os.ReadFile("/run/console-proxy/vm-42.vncpasswd")
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println(c.ConnectionState())

	img, err := rfb.Screenshot(ctx, c)
	if err != nil {
		fmt.Println(err)
		return
	}
	f, err := os.Create("vm-42.png")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		fmt.Println(err)
	}
}

// A console proxy: it authenticates to the VM's VNC server as in
// ExampleDial, presents the VM's desktop to its own viewer with
// AcceptViewer, and relays until either side leaves.
func ExampleAcceptViewer() {
	ctx := context.Background()
	caPEM, _ := os.ReadFile("/etc/pki/CA/cacert.pem")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	proxyCert, err := tls.LoadX509KeyPair("/etc/pki/proxy/clientcert.pem", "/etc/pki/proxy/private/clientkey.pem")
	if err != nil {
		fmt.Println(err)
		return
	}
	// Viewers reach the proxy over a channel it has authenticated and
	// encrypted (a WebSocket over HTTPS with a one-time token); a local
	// listener stands in for it here.
	ln, err := net.Listen("tcp", "127.0.0.1:5999")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	viewerConn, err := ln.Accept()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer viewerConn.Close()

	c, err := rfb.Dial(ctx, "tcp", "kvm1.example.org:5901", &rfb.Config{
		TLSConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{proxyCert}},
		Password: func() ([]byte, error) {
			return os.ReadFile("/run/console-proxy/vm-42.vncpasswd")
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	v, err := rfb.AcceptViewer(ctx, viewerConn, c.ServerInit(), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Relay(ctx, v); err != nil {
		fmt.Println(err)
	}
}

// The in-process server of package rfbtest stands in for QEMU in tests.
func ExampleScreenshot() {
	srv := rfbtest.NewServer(&rfbtest.Config{
		Security: []rfb.Security{rfb.SecurityVNCAuth},
		Password: []byte("s3cret"),
		Width:    32, Height: 16,
	})
	defer srv.Close()

	ctx := context.Background()
	c, err := rfb.Dial(ctx, "tcp", srv.Addr, &rfb.Config{
		// An unencrypted method must be asked for by name.
		Security: []rfb.Security{rfb.SecurityVNCAuth},
		Password: func() ([]byte, error) { return []byte("s3cret"), nil },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	st := c.ConnectionState()
	fmt.Println(st)
	fmt.Println("encrypted:", st.Encrypted())

	img, err := rfb.Screenshot(ctx, c)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(img.Bounds(), img.RGBAAt(0, 0), img.RGBAAt(31, 15))
	// Output:
	// RFB 3.8, VNCAuth (2), unencrypted
	// encrypted: false
	// (0,0)-(32,16) {255 0 0 255} {240 240 255 255}
}

// A wrong password is an *AuthError carrying the server's reason.
func ExampleAuthError() {
	srv := rfbtest.NewServer(&rfbtest.Config{Security: []rfb.Security{rfb.SecurityVNCAuth}, Password: []byte("s3cret")})
	defer srv.Close()
	_, err := rfb.Dial(context.Background(), "tcp", srv.Addr, &rfb.Config{
		Security: []rfb.Security{rfb.SecurityVNCAuth},
		Password: func() ([]byte, error) { return []byte("guess"), nil },
	})
	fmt.Println(err)
	// Output:
	// rfb: authentication failed: server says "Authentication failed"
}
