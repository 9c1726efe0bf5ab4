package libvirttls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrNoVNCTLS is wrapped by the error of a VNC reload for a guest that
// has no VNC server, or one without TLS credentials: it holds no
// certificate to reload.
var ErrNoVNCTLS = errors.New("libvirttls: guest has no VNC TLS server")

// displayReloadVNC is the QMP command that makes QEMU's VNC server load
// its tls-creds-x509 directory again (QEMU >= 6.0). It holds no secret:
// the certificates and keys stay in their files.
const displayReloadVNC = `{"execute":"display-reload","arguments":{"type":"vnc","tls-certs":true}}`

// ReloadVNCQMP makes the QEMU whose QMP monitor listens on the UNIX
// socket socketPath load its VNC server's TLS credentials again, from the
// files of its tls-creds-x509 object, without stopping the guest. New
// VNC connections get the new certificates; connections already open keep
// theirs.
//
// The dial, QEMU's greeting, capabilities negotiation and the command
// share one deadline: ctx's, and at most 10 seconds. An error reply is a
// *[QMPError]; a guest without VNC TLS gives one wrapping [ErrNoVNCTLS].
//
// The monitor must be free: QEMU serves one client per QMP socket, and a
// guest libvirt manages has libvirt on its monitor; use [ReloadVNC] for
// those.
func ReloadVNCQMP(ctx context.Context, socketPath string) error {
	ctx, cancel := withDefaultTimeout(ctx, 0)
	defer cancel()
	c, err := dialQMP(ctx, socketPath)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.execute(ctx, "display-reload", map[string]any{"type": "vnc", "tls-certs": true})
	return err
}

// ReloadVNCOptions tune [ReloadVNC]. The zero value reloads every running
// guest of virsh's default connection (qemu:///system as root).
type ReloadVNCOptions struct {
	// URI is the libvirt connection URI given to virsh -c. If empty,
	// virsh uses its default.
	URI string

	// Domains are the guests to reload, by name or UUID. If nil, every
	// running guest is reloaded (virsh list --name --state-running).
	Domains []string

	// Timeout bounds each virsh command (within ctx). If zero, 10
	// seconds.
	Timeout time.Duration

	// Virsh is the virsh program. If empty, "virsh" is looked up in PATH.
	Virsh string
}

// ReloadVNCResult says what [ReloadVNC] did.
type ReloadVNCResult struct {
	// Reloaded are the guests whose VNC server loaded its TLS
	// credentials again.
	Reloaded []string
	// Skipped are the guests without a VNC TLS server: nothing to
	// reload.
	Skipped []string
}

// GuestError is the failure of a reload for one guest.
type GuestError struct {
	Domain string
	Err    error
}

func (e *GuestError) Error() string {
	return fmt.Sprintf("libvirttls: guest %q: %v", e.Domain, e.Err)
}

func (e *GuestError) Unwrap() error { return e.Err }

// ReloadVNC makes the VNC servers of running guests load their TLS
// credentials again, through libvirt: for each guest it runs
//
//	virsh qemu-monitor-command --domain GUEST '{"execute":"display-reload","arguments":{"type":"vnc","tls-certs":true}}'
//
// so QEMU reads the files of the tls-creds-x509 object libvirt gave it
// (vnc_tls_x509_cert_dir, /etc/pki/libvirt-vnc) without stopping the
// guest. This is what a host needs after new credentials land: neither a
// libvirtd restart nor server-update-tls reaches a running guest's VNC
// server, so without it a guest keeps serving its old certificate until
// it stops (CloudStack issues #9718 and #12982).
//
// Guests without VNC TLS are listed in Skipped, not failed. Failures are
// returned joined, one *[GuestError] per guest, after every guest was
// tried; the result lists the guests that succeeded either way. libvirt
// marks a guest that received a monitor command as tainted
// ("custom-monitor"); the command itself changes nothing else.
func ReloadVNC(ctx context.Context, opts *ReloadVNCOptions) (*ReloadVNCResult, error) {
	if opts == nil {
		opts = &ReloadVNCOptions{}
	}
	domains := opts.Domains
	if domains == nil {
		out, err := opts.virsh(ctx, maxVirshList, "list", "--name", "--state-running")
		if err != nil {
			return nil, err
		}
		for line := range strings.Lines(string(out)) {
			if name := strings.TrimSpace(line); name != "" {
				domains = append(domains, name)
			}
		}
	}
	res := &ReloadVNCResult{}
	var errs []error
	for _, d := range domains {
		err := opts.reloadDomain(ctx, d)
		switch {
		case err == nil:
			res.Reloaded = append(res.Reloaded, d)
		case errors.Is(err, ErrNoVNCTLS):
			res.Skipped = append(res.Skipped, d)
		default:
			errs = append(errs, &GuestError{Domain: d, Err: err})
		}
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
	}
	return res, errors.Join(errs...)
}

// reloadDomain sends display-reload to one guest and reads QEMU's reply,
// which virsh prints as it came (an error reply too, with status 0).
func (o *ReloadVNCOptions) reloadDomain(ctx context.Context, domain string) error {
	if domain == "" || len(domain) > maxDomainName || !utf8.ValidString(domain) || strings.ContainsAny(domain, "\x00\n") {
		return fmt.Errorf("libvirttls: invalid domain name %q", clip(domain, maxDomainName))
	}
	out, err := o.virsh(ctx, maxQMPLine, "qemu-monitor-command", "--domain", domain, displayReloadVNC)
	if err != nil {
		return err
	}
	r, err := parseQMPReply(out)
	if err != nil {
		return err
	}
	if r.err != nil {
		return r.err
	}
	if r.ret == nil {
		return fmt.Errorf("%w: display-reload: no return value in %q", errQMPProtocol, clip(string(out), maxQMPDesc))
	}
	return nil
}

// virsh runs virsh with args under the options' timeout and returns its
// standard output, which may not exceed limit bytes.
func (o *ReloadVNCOptions) virsh(ctx context.Context, limit int, args ...string) ([]byte, error) {
	ctx, cancel := withDefaultTimeout(ctx, o.Timeout)
	defer cancel()
	bin := o.Virsh
	if bin == "" {
		bin = "virsh"
	}
	full := []string{"--quiet"}
	if o.URI != "" {
		full = append(full, "-c", o.URI)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	stdout := &limitedBuffer{limit: limit}
	stderr := &limitedBuffer{limit: maxQMPDesc}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if err == nil && stdout.overflow {
		err = fmt.Errorf("output longer than %d bytes", limit)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return nil, fmt.Errorf("libvirttls: virsh %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// withDefaultTimeout bounds ctx by d, or defaultReloadTimeout when d is
// zero, unless ctx has an earlier deadline.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = defaultReloadTimeout
	}
	return context.WithTimeout(ctx, d)
}

// limitedBuffer keeps the first limit bytes written and notes an
// overflow; it never fails a write, so the writer is not blocked.
type limitedBuffer struct {
	bytes.Buffer
	limit    int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); room < len(p) {
		b.overflow = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// reloadVNCActions returns the action that reloads running guests' VNC
// credentials when changes write a file into an existing VNC directory (a
// renewed certificate or key, a new or first CRL, a new CA bundle), and
// nothing when the directory is new: a first install has no running guest
// with VNC TLS to reload. A libvirtd restart or server-update-tls does
// not reach running guests, which would otherwise keep the old
// certificate and, with a new CRL, keep accepting a revoked console
// proxy.
func reloadVNCActions(changes []Change) []Action {
	written := false
	for _, ch := range changes {
		switch {
		case ch.Kind == ChangeMkdir && ch.Path == VNCDir && !ch.before.exists:
			return nil
		case ch.Kind == ChangeFile && strings.HasPrefix(ch.Path, VNCDir+"/"):
			written = true
		}
	}
	if !written {
		return nil
	}
	return []Action{{
		Command: []string{"virsh", "qemu-monitor-command", "--domain", "<each running guest>", displayReloadVNC},
		Why:     "running guests' VNC servers load the new certificates and CRL without stopping (QEMU display-reload); libvirtd's reload does not reach them",
		Run: func(ctx context.Context) error {
			_, err := ReloadVNC(ctx, nil)
			return err
		},
	}}
}
