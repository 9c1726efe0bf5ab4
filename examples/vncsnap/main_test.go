package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"image"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
	"github.com/kvmpki/kvmpki/rootca"
)

// fixture is a CA with a host and a proxy certificate, written to files
// as vncsnap reads them.
type fixture struct {
	dir                  string
	caFile               string
	certFile, keyFile    string // the proxy's client certificate
	roots                *x509.CertPool
	server               tls.Certificate
	serverPEM, serverKey []byte
	caPEM                []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: key, LeafKeyAlgorithm: provider.KeyAlgorithmECDSA}})
	require.NoError(t, err)
	t.Cleanup(func() { ca.Close() })
	f := &fixture{dir: t.TempDir(), roots: x509.NewCertPool()}
	f.caPEM, err = provider.CABundle(ctx, ca)
	require.NoError(t, err)
	f.roots.AppendCertsFromPEM(f.caPEM)
	f.caFile = f.write(t, "ca.pem", f.caPEM, 0o644)

	issue := func(req *provider.IssueRequest) ([]byte, []byte, tls.Certificate) {
		res, err := ca.Issue(ctx, req)
		require.NoError(t, err)
		der, err := x509.MarshalPKCS8PrivateKey(res.PrivateKey)
		require.NoError(t, err)
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: res.Certificate.Raw})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		return certPEM, keyPEM, tls.Certificate{Certificate: [][]byte{res.Certificate.Raw}, PrivateKey: res.PrivateKey}
	}
	f.serverPEM, f.serverKey, f.server = issue(&provider.IssueRequest{
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Role: provider.RoleHost,
	})
	certPEM, keyPEM, _ := issue(&provider.IssueRequest{CommonName: "console-proxy", Role: provider.RoleClient})
	f.certFile = f.write(t, "proxy.pem", certPEM, 0o644)
	f.keyFile = f.write(t, "proxy-key.pem", keyPEM, 0o600)
	return f
}

func (f *fixture) write(t *testing.T, name string, data []byte, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(f.dir, name)
	require.NoError(t, os.WriteFile(path, data, perm))
	return path
}

// buildVncsnap builds the command once per test.
func buildVncsnap(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vncsnap")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// runVncsnap runs the binary and returns its exit code, stdout and stderr.
func runVncsnap(t *testing.T, bin, stdin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, stdout.String(), stderr.String()
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	fh, err := os.Open(path)
	require.NoError(t, err)
	defer fh.Close()
	img, err := png.Decode(fh)
	require.NoError(t, err)
	return img
}

func TestVncsnap(t *testing.T) {
	f := newFixture(t)
	bin := buildVncsnap(t)
	srv := rfbtest.NewServer(&rfbtest.Config{
		Security:  []rfb.Security{rfb.SecurityX509Vnc},
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{f.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: f.roots},
		Password:  []byte("s3cret"),
		Width:     48, Height: 32,
	})
	defer srv.Close()
	pwFile := f.write(t, "vnc.pw", []byte("s3cret\n"), 0o600)
	wrongFile := f.write(t, "wrong.pw", []byte("nope\n"), 0o600)
	out := func(name string) string { return filepath.Join(f.dir, name) }

	tests := []struct {
		name       string
		stdin      string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr string
		png        string
	}{
		{
			name:  "password from stdin",
			stdin: "s3cret\n",
			args:  []string{"-addr", srv.Addr, "-ca", f.caFile, "-cert", f.certFile, "-key", f.keyFile, "-password-file", "-", "-out", out("stdin.png")},
			wantStdout: []string{
				"security: RFB 3.8, VeNCrypt X509Vnc (261), TLS 1.3 TLS_",
				"server CN=localhost verified by CN=kvmpki root CA",
				`desktop:  "rfbtest" 48x32`,
				"wrote:    " + out("stdin.png") + " (48x32)",
			},
			png: out("stdin.png"),
		},
		{
			name:       "password file and server name",
			args:       []string{"-addr", srv.Addr, "-ca", f.caFile, "-cert", f.certFile, "-key", f.keyFile, "-server-name", "localhost", "-password-file", pwFile, "-out", out("file.png")},
			wantStdout: []string{"VeNCrypt X509Vnc (261)"},
			png:        out("file.png"),
		},
		{
			name:       "wrong password",
			args:       []string{"-addr", srv.Addr, "-ca", f.caFile, "-cert", f.certFile, "-key", f.keyFile, "-password-file", wrongFile, "-out", out("wrong.png")},
			wantCode:   1,
			wantStderr: `vncsnap: rfb: authentication failed: server says "Authentication failed"`,
		},
		{
			name:       "no client certificate",
			args:       []string{"-addr", srv.Addr, "-ca", f.caFile, "-password-file", pwFile, "-out", out("nocert.png")},
			wantCode:   1,
			wantStderr: "rejected the TLS client; is the client certificate missing",
		},
		{
			name:       "wrong server name",
			args:       []string{"-addr", srv.Addr, "-ca", f.caFile, "-cert", f.certFile, "-key", f.keyFile, "-server-name", "kvm9.example.org", "-password-file", pwFile, "-out", out("name.png")},
			wantCode:   1,
			wantStderr: "certificate is valid for localhost, not kvm9.example.org",
		},
		{
			name:       "password as an argument",
			args:       []string{"-addr", srv.Addr, "-ca", f.caFile, "-out", out("arg.png"), "s3cret"},
			wantCode:   2,
			wantStderr: "the password is never an argument",
		},
		{
			name:       "no CA",
			args:       []string{"-addr", srv.Addr, "-out", out("noca.png")},
			wantCode:   2,
			wantStderr: "-ca is required",
		},
		{
			name:       "cert without key",
			args:       []string{"-addr", srv.Addr, "-ca", f.caFile, "-cert", f.certFile, "-out", out("nokey.png")},
			wantCode:   2,
			wantStderr: "-cert and -key go together",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runVncsnap(t, bin, tc.stdin, tc.args...)
			assert.Equal(t, tc.wantCode, code, "stderr: %s", stderr)
			for _, want := range tc.wantStdout {
				assert.Contains(t, stdout, want)
			}
			if tc.wantStderr != "" {
				assert.Contains(t, stderr, tc.wantStderr)
			}
			if tc.png != "" {
				img := readPNG(t, tc.png)
				want := rfbtest.TestPattern(48, 32)
				require.Equal(t, want.Bounds(), img.Bounds())
				for _, p := range []image.Point{{0, 0}, {47, 0}, {0, 31}, {47, 31}, {20, 10}} {
					assert.Equal(t, want.At(p.X, p.Y), img.At(p.X, p.Y), "pixel %v", p)
				}
			} else {
				// A failure leaves no file behind.
				for i, a := range tc.args {
					if a == "-out" {
						_, err := os.Stat(tc.args[i+1])
						assert.ErrorIs(t, err, os.ErrNotExist)
					}
				}
				assert.Empty(t, stdout)
			}
		})
	}
}

// TestVncsnapQEMU takes a screenshot of a real QEMU with VeNCrypt X509Vnc.
func TestVncsnapQEMU(t *testing.T) {
	peers.Require(t, "qemu-system-x86_64")
	f := newFixture(t)
	q, err := peers.StartQEMUVNCPassword(t, peers.PKI{CACert: f.caPEM, Cert: f.serverPEM, Key: f.serverKey}, []byte("s3cret"), peers.QEMUVNCOptions{})
	require.NoError(t, err)
	bin := buildVncsnap(t)
	outFile := filepath.Join(f.dir, "qemu.png")
	code, stdout, stderr := runVncsnap(t, bin, "s3cret",
		"-addr", q.Addr, "-ca", f.caFile, "-cert", f.certFile, "-key", f.keyFile, "-password-file", "-", "-out", outFile)
	require.Equal(t, 0, code, "stderr: %s\n%s", stderr, q.Log())
	assert.Contains(t, stdout, "security: RFB 3.8, VeNCrypt X509Vnc (261), TLS 1.3")
	assert.Contains(t, stdout, `desktop:  "QEMU" 640x480`)
	assert.Equal(t, image.Rect(0, 0, 640, 480), readPNG(t, outFile).Bounds())
}
