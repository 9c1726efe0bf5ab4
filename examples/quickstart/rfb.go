package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
	"github.com/kvmpki/kvmpki/rootca"
)

// rfbSection plays a console proxy reaching a VM's VNC console: an
// in-process VNC server stands in for QEMU with tls-creds-x509
// (verify-peer=on) and a VNC password, using a host certificate from ca;
// the proxy connects over VeNCrypt X509Vnc with its own certificate from
// ca, reports how the connection is secured, and saves a screenshot in
// dir. A second attempt without a client certificate is refused.
func rfbSection(ctx context.Context, out io.Writer, ca *rootca.CA, dir string) error {
	host, err := ca.Issue(ctx, &provider.IssueRequest{
		DNSNames:     []string{"kvm1.example.org"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		Role:         provider.RoleHost,
		KeyAlgorithm: provider.KeyAlgorithmECDSA,
		Validity:     24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("issue VNC host certificate: %w", err)
	}
	proxy, err := ca.Issue(ctx, &provider.IssueRequest{
		CommonName:   "console-proxy",
		Role:         provider.RoleClient,
		KeyAlgorithm: provider.KeyAlgorithmECDSA,
		Validity:     24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("issue console-proxy certificate: %w", err)
	}
	hostCert, err := host.TLSCertificate()
	if err != nil {
		return err
	}
	proxyCert, err := proxy.TLSCertificate()
	if err != nil {
		return err
	}
	bundle, err := provider.CABundle(ctx, ca)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(bundle)

	// The VM's VNC server: like QEMU with verify-peer=on, it lets the TLS
	// handshake finish and then closes the connection on a client
	// without a valid certificate, here judged by the CA itself (chain,
	// client role, revocation).
	checkClient := provider.VerifyClientConnection(ca, nil)
	password := []byte("vm-42-vnc")
	srv := rfbtest.NewServer(&rfbtest.Config{
		Security: []rfb.Security{rfb.SecurityX509Vnc},
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{hostCert},
			MinVersion:   tls.VersionTLS12,
		},
		RejectClientAfterTLS: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			return checkClient(cs)
		},
		Password: password,
		Name:     "QEMU (vm-42)",
		Width:    640, Height: 480,
	})
	defer srv.Close()

	cfg := &rfb.Config{
		TLSConfig: &tls.Config{
			RootCAs:          roots,
			ServerName:       "kvm1.example.org",
			Certificates:     []tls.Certificate{proxyCert},
			VerifyConnection: provider.VerifyServerConnection(ca, "kvm1.example.org", nil),
		},
		Password: func() ([]byte, error) { return password, nil }, // rfb copies it, and never clears this slice
	}
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := rfb.Dial(dialCtx, "tcp", srv.Addr, cfg)
	if err != nil {
		return fmt.Errorf("VNC console: %w", err)
	}
	defer c.Close()
	st := c.ConnectionState()
	if !st.Encrypted() {
		return errors.New("VNC console is not encrypted")
	}
	fmt.Fprintf(out, "vnc console:   %s\n", st)

	img, err := rfb.Screenshot(dialCtx, c)
	if err != nil {
		return fmt.Errorf("VNC screenshot: %w", err)
	}
	shot := filepath.Join(dir, "vm-42.png")
	fh, err := os.Create(shot)
	if err != nil {
		return err
	}
	if err := png.Encode(fh, img); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	fmt.Fprintf(out, "vnc screen:    %q %dx%d saved as %s\n", c.DesktopName(), img.Rect.Dx(), img.Rect.Dy(), filepath.Base(shot))

	// Without its certificate the proxy is turned away, and says why.
	noCert := cfg.Clone()
	noCert.TLSConfig.Certificates = nil
	_, err = rfb.Dial(dialCtx, "tcp", srv.Addr, noCert)
	if !errors.Is(err, rfb.ErrTLSClientRejected) {
		return fmt.Errorf("VNC console without a client certificate: got %v, want a refusal", err)
	}
	fmt.Fprintf(out, "vnc refused:   %v\n", err)
	return nil
}
