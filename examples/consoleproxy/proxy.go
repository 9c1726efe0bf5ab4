package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/kvmpki/kvmpki/rfb"
)

//go:embed static
var static embed.FS

// proxy serves the console page, the noVNC bundle and the WebSocket
// endpoint that bridges a browser to one VM's VNC server.
type proxy struct {
	tokens      *Tokens
	roots       *x509.CertPool  // the CA that issued the hypervisors' certificates
	clientCert  tls.Certificate // the proxy's identity towards QEMU
	novnc       []byte          // the noVNC bundle, see bundleNoVNC
	log         *slog.Logger
	now         func() time.Time
	dialTimeout time.Duration
}

// maxViewerMessage bounds one WebSocket message from the browser.
const maxViewerMessage = 1<<20 + 64

// status is the first WebSocket message, a text frame sent before any
// RFB byte: the back end's real security state, or why there is no
// session. The page's "encrypted" indicator shows only what this says.
type status struct {
	Error string `json:"error,omitempty"`

	Encrypted   bool   `json:"encrypted"`
	Protocol    string `json:"protocol,omitempty"`
	Security    string `json:"security,omitempty"`
	TLSVersion  string `json:"tlsVersion,omitempty"`
	CipherSuite string `json:"cipherSuite,omitempty"`
	Server      string `json:"server,omitempty"`
	Issuer      string `json:"issuer,omitempty"`
	Desktop     string `json:"desktop,omitempty"`
}

// statusOf describes a back end connection from its ConnectionState.
func statusOf(c *rfb.Conn) status {
	st := c.ConnectionState()
	s := status{Encrypted: st.Encrypted(), Protocol: "RFB " + st.ProtocolVersion, Security: st.Security.String(), Desktop: c.DesktopName()}
	if st.TLS != nil {
		s.TLSVersion = tls.VersionName(st.TLS.Version)
		s.CipherSuite = tls.CipherSuiteName(st.TLS.CipherSuite)
		if len(st.TLS.PeerCertificates) > 0 {
			s.Server = st.TLS.PeerCertificates[0].Subject.String()
		}
		if len(st.TLS.VerifiedChains) > 0 {
			chain := st.TLS.VerifiedChains[0]
			s.Issuer = chain[len(chain)-1].Subject.String()
		}
	}
	return s
}

func (p *proxy) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console", http.StatusFound)
	})
	mux.HandleFunc("GET /console", p.serveStatic("static/console.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /console.js", p.serveStatic("static/console.js", "text/javascript; charset=utf-8"))
	sum := sha256.Sum256(p.novnc)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	mux.HandleFunc("GET /novnc.js", func(w http.ResponseWriter, r *http.Request) {
		// Revalidated by its hash: a browser opening another console
		// loads the 800 KiB bundle once.
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", etag)
		http.ServeContent(w, r, "novnc.js", time.Time{}, bytes.NewReader(p.novnc))
	})
	mux.HandleFunc("GET /websockify", p.serveWebSocket)
	return securityHeaders(mux)
}

// securityHeaders keeps the page out of frames, sends no Referer (the
// token lives in the page's fragment, but links should not leak the
// origin either) and allows scripts from the proxy only.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func (p *proxy) serveStatic(name, contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := static.ReadFile(name)
		if err != nil {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(b)
	}
}

// serveWebSocket checks the console token, connects to the VM's VNC
// server over verified TLS with the proxy's client certificate, reports
// the back end's security state in a text message and then relays RFB
// between the browser (security None) and the VM.
func (p *proxy) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	// The token is checked before anything else happens: a refused token
	// never causes a connection to a hypervisor.
	target, tokenErr := p.tokens.Open(r.URL.Query().Get("token"), p.now())

	// The default AcceptOptions refuse a cross-origin page.
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		p.log.Info("websocket refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	defer ws.CloseNow()
	// A viewer's messages are small but for ClientCutText, which
	// AcceptViewer's ReadMessage bounds at 1 MiB; WebSocket frames from
	// noVNC carry one message each.
	ws.SetReadLimit(maxViewerMessage)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	fail := func(code websocket.StatusCode, msg string, err error) {
		p.log.Info("console refused", "remote", r.RemoteAddr, "reason", msg, "err", err)
		if b, jerr := json.Marshal(status{Error: msg}); jerr == nil {
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			_ = ws.Write(wctx, websocket.MessageText, b)
			wcancel()
		}
		_ = ws.Close(code, "")
	}
	if tokenErr != nil {
		fail(websocket.StatusPolicyViolation, userMessage(tokenErr), tokenErr)
		return
	}

	dctx, dcancel := context.WithTimeout(ctx, p.dialTimeout)
	c, err := rfb.Dial(dctx, "tcp", target.Addr(), &rfb.Config{
		TLSConfig: &tls.Config{
			RootCAs:      p.roots,
			Certificates: []tls.Certificate{p.clientCert},
			ServerName:   target.ServerName,
			MinVersion:   tls.VersionTLS12,
		},
		Password: func() ([]byte, error) { return []byte(target.Password), nil },
		Logger:   p.log,
	})
	dcancel()
	if err != nil {
		fail(websocket.StatusInternalError, userMessage(err), err)
		return
	}
	defer c.Close()
	st := statusOf(c)
	if !st.Encrypted {
		// rfb's default Config accepts only the X509 subtypes; this is
		// the proxy's own statement of the rule.
		fail(websocket.StatusInternalError, "the VM's console is not encrypted", nil)
		return
	}
	b, err := json.Marshal(st)
	if err != nil {
		fail(websocket.StatusInternalError, "internal error", err)
		return
	}
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		return
	}
	p.log.Info("console opened", "remote", r.RemoteAddr, "vm", target.Addr(), "security", c.ConnectionState().String())

	nc := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	hctx, hcancel := context.WithTimeout(ctx, p.dialTimeout)
	v, err := rfb.AcceptViewer(hctx, nc, c.ServerInit(), nil)
	hcancel()
	if err != nil {
		p.log.Info("viewer handshake failed", "remote", r.RemoteAddr, "err", err)
		_ = nc.Close()
		return
	}
	start := time.Now()
	err = c.Relay(ctx, v)
	p.log.Info("console closed", "remote", r.RemoteAddr, "vm", target.Addr(), "duration", time.Since(start).Round(time.Millisecond), "err", err)
}

// userMessage is what the page shows for a refusal: the category, not
// the internals (addresses, certificate details stay in the proxy's log).
func userMessage(err error) string {
	switch {
	case errors.Is(err, errTokenExpired):
		return "console link expired: open the console again from the portal"
	case errors.Is(err, errTokenUsed):
		return "console link already used: open the console again from the portal"
	case errors.Is(err, errTokenInvalid):
		return "invalid console link"
	case errors.Is(err, rfb.ErrUnknownAuthority), errors.Is(err, rfb.ErrNameMismatch),
		errors.Is(err, rfb.ErrExpired), errors.Is(err, rfb.ErrIncompatibleUsage):
		return "the VM's console server presented an untrusted certificate"
	case errors.As(err, new(*rfb.NoSecurityError)):
		return "the VM's console server offers no encrypted connection"
	case errors.Is(err, rfb.ErrTLSClientRejected):
		return "the VM's console server refused the proxy's certificate"
	case errors.Is(err, rfb.ErrAuthFailed):
		return "the VM's console server refused the password"
	case errors.Is(err, context.DeadlineExceeded):
		return "the VM's console server did not answer in time"
	default:
		return "cannot connect to the VM's console"
	}
}
