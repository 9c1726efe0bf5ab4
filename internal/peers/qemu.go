package peers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// vncBasePort is the TCP port of VNC display 0.
const vncBasePort = 5900

// ffdhe2048 is the RFC 7919 ffdhe2048 group as PKCS #3 DH parameters
// (openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048).
// Written as dh-params.pem, it spares QEMU 7.2 generating parameters at
// start, which took from 0.2 s to over 4 s; with it QEMU listens in about
// 0.1 s. The group is public, not a secret.
const ffdhe2048 = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`

// QEMUVNCOptions tunes [StartQEMUVNC]. The zero value makes QEMU demand a
// client certificate, QEMU's own default.
type QEMUVNCOptions struct {
	// NoVerifyPeer sets verify-peer=off: QEMU then neither requests nor
	// checks a client certificate.
	NoVerifyPeer bool

	// QMP adds a QMP monitor on a UNIX socket (server=on,wait=off), whose
	// path is then [QEMUVNC.QMPSocket]. If false, QEMU has no monitor.
	QMP bool
}

// QEMUVNC is a throwaway QEMU whose only device is a VNC server with
// VeNCrypt X509None (tls-creds-x509, no password), started by
// [StartQEMUVNC] and stopped when the test ends.
type QEMUVNC struct {
	// Addr is the VNC server's TCP address, "127.0.0.1:PORT".
	Addr string
	// Display is the VNC display number: PORT is 5900 + Display.
	Display int
	// QMPSocket is the path of QEMU's QMP socket when
	// [QEMUVNCOptions.QMP] was set, and empty otherwise.
	QMPSocket string

	tracePath string
	proc      *process
}

// StartQEMUVNC starts qemu-system-x86_64 -machine none with a
// tls-creds-x509 object (endpoint=server) whose directory holds
// server.CACert as ca-cert.pem, server.Cert as server-cert.pem, server.Key
// as server-key.pem and, when set, server.CRL as ca-crl.pem (plus fixed
// dh-params.pem), and a VNC server on 127.0.0.1 using it. It returns once
// QEMU listens.
//
// QEMU checks its certificates when it creates the object. If it refuses
// them ("The certificate … basic constraints show a CA, but we need one
// for a server"), QEMU exits and StartQEMUVNC returns an error holding
// QEMU's output. Other setup failures fail the test.
func StartQEMUVNC(t testing.TB, server PKI, opts QEMUVNCOptions) (*QEMUVNC, error) {
	t.Helper()
	Require(t, "qemu-system-x86_64")
	dir := t.TempDir()
	credsDir := filepath.Join(dir, "creds")
	if err := os.Mkdir(credsDir, 0o700); err != nil {
		t.Fatalf("peers: %v", err)
	}
	if err := server.writeLayout(t, credsDir, qemuServerLayout, fileSpec{name: "dh-params.pem", data: []byte(ffdhe2048)}); err != nil {
		return nil, err
	}

	return startQEMUVNC(t, dir, credsDir, "", opts)
}

// startQEMUVNC starts QEMU as a VNC server on a free loopback port with
// the TLS credentials in credsDir and, if passwordFile is set, VNC
// password authentication with the password in that file, read through a
// secret object (never the command line). dir holds QEMU's trace log.
func startQEMUVNC(t testing.TB, dir, credsDir, passwordFile string, opts QEMUVNCOptions) (*QEMUVNC, error) {
	t.Helper()
	verify := "on"
	if opts.NoVerifyPeer {
		verify = "off"
	}
	q := &QEMUVNC{}
	var lastErr error
	for attempt := range startAttempts {
		port, err := freePort(vncBasePort)
		if err != nil {
			t.Fatal(err)
		}
		q.Display = port - vncBasePort
		q.Addr = net.JoinHostPort("127.0.0.1", itoa(port))
		q.tracePath = filepath.Join(dir, fmt.Sprintf("trace-%d.log", attempt))
		args := []string{
			"-nodefaults", "-no-user-config", "-display", "none", "-machine", "none",
			"-object", "tls-creds-x509,id=tls0,endpoint=server,verify-peer=" + verify + ",dir=" + qemuOptValue(credsDir),
		}
		if opts.QMP {
			q.QMPSocket = qmpSocketPath(t)
			args = append(args, "-qmp", "unix:"+qemuOptValue(q.QMPSocket)+",server=on,wait=off")
		}
		vnc := fmt.Sprintf("127.0.0.1:%d,tls-creds=tls0", q.Display)
		if passwordFile != "" {
			args = append(args, "-object", "secret,id=vncpw,format=raw,file="+qemuOptValue(passwordFile))
			vnc += ",password-secret=vncpw"
		}
		args = append(args, "-vnc", vnc,
			// The trace carries QEMU's reason for refusing a client,
			// e.g. "Verify failed: The certificate has been revoked".
			"-trace", "vnc_auth_fail", "-trace", "vnc_auth_reject", "-D", q.tracePath)
		q.proc, err = startProcess(t, dir, nil, "qemu-system-x86_64", args...)
		if err != nil {
			t.Fatal(err)
		}
		err = q.proc.waitListening(port)
		if err == nil {
			return q, nil
		}
		lastErr = fmt.Errorf("%w\n%s", err, q.Log())
		if !strings.Contains(q.Log(), "Address already in use") {
			break
		}
		lastErr = fmt.Errorf("%w: %w", errPortInUse, lastErr)
	}
	return nil, lastErr
}

// qemuOptValue escapes a QEMU option value: commas are doubled.
func qemuOptValue(s string) string {
	return strings.ReplaceAll(s, ",", ",,")
}

// Log returns QEMU's output and its VNC authentication trace.
func (q *QEMUVNC) Log() string {
	out := q.proc.output()
	trace, err := os.ReadFile(q.tracePath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return out + "(trace unavailable: " + err.Error() + ")"
	}
	return out + string(trace)
}

// Probe connects to the VNC server, negotiates RFB 3.8 and VeNCrypt 0.2
// subtype X509None (260), runs a crypto/tls client handshake with cfg and
// reads QEMU's SecurityResult. It returns nil when QEMU accepted the
// client, and otherwise an error holding QEMU's log.
//
// cfg supplies RootCAs, the client certificate and ServerName; if
// ServerName is empty, "127.0.0.1" is verified. When cfg holds exactly one
// certificate and no GetClientCertificate, Probe always presents that
// certificate: crypto/tls would otherwise silently send none when its
// issuer is not among the CAs QEMU lists, and the refusal of a foreign
// certificate would not be tested.
//
// QEMU checks the client certificate after the TLS handshake, so Go's
// handshake succeeds either way; a refused client sees EOF instead of the
// SecurityResult, which Probe reports as QEMU refusing the certificate.
func (q *QEMUVNC) Probe(t testing.TB, cfg *tls.Config) error {
	t.Helper()
	if cfg == nil {
		return errors.New("peers: Probe needs a tls.Config")
	}
	cfg = probeConfig(cfg)
	ctx, cancel := context.WithTimeout(t.Context(), probeTimeout)
	defer cancel()
	before := q.traceSize()
	err := probeVNC(ctx, q.Addr, cfg)
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w\n-- QEMU log --\n%s", err, q.traceSince(before))
}

// probeConfig returns a copy of cfg that verifies "127.0.0.1" when
// ServerName is empty and always presents its one certificate (see
// [QEMUVNC.Probe]).
func probeConfig(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = "127.0.0.1"
	}
	if len(cfg.Certificates) == 1 && cfg.GetClientCertificate == nil {
		cert := cfg.Certificates[0]
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		}
	}
	return cfg
}

// traceSize returns the current size of the trace file.
func (q *QEMUVNC) traceSize() int {
	fi, err := os.Stat(q.tracePath)
	if err != nil {
		return 0
	}
	return int(fi.Size())
}

// traceSince returns QEMU's output and the trace written after offset
// off. QEMU writes the trace line just before closing the connection, so
// it waits briefly for it to appear.
func (q *QEMUVNC) traceSince(off int) string {
	deadline := time.Now().Add(time.Second)
	for q.traceSize() <= off && time.Now().Before(deadline) {
		time.Sleep(pollInterval)
	}
	b, err := os.ReadFile(q.tracePath)
	if err != nil {
		return q.proc.output() + "(trace unavailable: " + err.Error() + ")"
	}
	if off > len(b) {
		off = 0
	}
	return q.proc.output() + string(b[off:])
}
