package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"image"
	"image/png"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// pkiFixture is a CA (rootca) with the certificates of a console proxy
// deployment, as PEM.
type pkiFixture struct {
	caPEM               []byte
	hostPEM, hostKey    []byte // the hypervisor: localhost, 127.0.0.1
	hostTLSCertificate  tls.Certificate
	proxyPEM, proxyKey  []byte // the proxy's client identity towards QEMU
	webCert             tls.Certificate
	webSPKIHash         string // base64 SHA-256 of the web server's SubjectPublicKeyInfo
	roots               *x509.CertPool
	proxyTLSCertificate tls.Certificate
}

func newPKI(t *testing.T) *pkiFixture {
	t.Helper()
	ctx := t.Context()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca, err := rootca.Create(ctx, rootca.NewMemStore(), &rootca.CreateOptions{Options: rootca.Options{Signer: key, LeafKeyAlgorithm: provider.KeyAlgorithmECDSA}})
	require.NoError(t, err)
	t.Cleanup(func() { ca.Close() })
	f := &pkiFixture{roots: x509.NewCertPool()}
	f.caPEM, err = provider.CABundle(ctx, ca)
	require.NoError(t, err)
	require.True(t, f.roots.AppendCertsFromPEM(f.caPEM))
	issue := func(req *provider.IssueRequest) (certPEM, keyPEM []byte, cert tls.Certificate) {
		res, err := ca.Issue(ctx, req)
		require.NoError(t, err)
		der, err := x509.MarshalPKCS8PrivateKey(res.PrivateKey)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: res.Certificate.Raw}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
			tls.Certificate{Certificate: [][]byte{res.Certificate.Raw}, PrivateKey: res.PrivateKey, Leaf: res.Certificate}
	}
	f.hostPEM, f.hostKey, f.hostTLSCertificate = issue(&provider.IssueRequest{DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Role: provider.RoleHost})
	f.proxyPEM, f.proxyKey, f.proxyTLSCertificate = issue(&provider.IssueRequest{CommonName: "console-proxy", Role: provider.RoleClient})
	_, _, f.webCert = issue(&provider.IssueRequest{CommonName: "console.example.org", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Role: provider.RoleServer})
	sum := sha256.Sum256(f.webCert.Leaf.RawSubjectPublicKeyInfo)
	f.webSPKIHash = base64.StdEncoding.EncodeToString(sum[:])
	return f
}

// writeFile writes data under dir with perm and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, data, perm))
	return path
}

// testProxy is a consoleproxy built from its flags, served over HTTPS by
// an httptest server.
type testProxy struct {
	*proxy
	URL string
}

func startProxy(t *testing.T, f *pkiFixture, novncDir string) *testProxy {
	t.Helper()
	dir := t.TempDir()
	secret := make([]byte, 32)
	rand.Read(secret)
	o := serveOptions{
		ca:          writeFile(t, dir, "ca.pem", f.caPEM, 0o644),
		cert:        writeFile(t, dir, "proxy.pem", f.proxyPEM, 0o644),
		key:         writeFile(t, dir, "proxy-key.pem", f.proxyKey, 0o600),
		tokenKey:    writeFile(t, dir, "token.key", secret, 0o600),
		novnc:       novncDir,
		dialTimeout: 10 * time.Second,
	}
	p, err := newProxy(o, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(p.handler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{f.webCert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &testProxy{proxy: p, URL: srv.URL}
}

// testWriter sends the proxy's log to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// requireNoVNC returns the directory holding noVNC, or skips.
func requireNoVNC(t *testing.T) string {
	t.Helper()
	dir := defaultNoVNCDir()
	if _, err := bundleNoVNC(dir); err != nil {
		peers.Unavailable(t, err.Error()+" (install it with examples/consoleproxy/install-novnc.sh, which needs npm, Debian package npm)")
	}
	return dir
}

// newBrowser starts a headless chromium that trusts the proxy's web
// certificate by its key hash only.
func newBrowser(t *testing.T, spkiHash string) context.Context {
	t.Helper()
	peers.Require(t, "chromium")
	bin, err := exec.LookPath("chromium")
	require.NoError(t, err)
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	require.NoError(t, chromedp.Do(ctx), "starting chromium")
	_, err = chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: firstFrameProbe})
		return chromedp.Void{}, err
	})
	require.NoError(t, err)
	return ctx
}

// firstFrameProbe runs in every page the browser opens: it records in
// window.firstFrame when (ms since the navigation began) the console's
// canvas first holds a pixel other than black, checking on every
// animation frame. The guest's screen is black with grey text, all sent in
// QEMU's first update, so that is the time to the first frame; the test
// then checks the whole canvas against screendump.
const firstFrameProbe = `(function () {
	function poll() {
		var c = document.querySelector("#screen canvas");
		if (c && c.width > 0 && c.height > 0) {
			var d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
			for (var i = 0; i < d.length; i += 4) {
				if (d[i] | d[i + 1] | d[i + 2]) { window.firstFrame = performance.now(); return; }
			}
		}
		requestAnimationFrame(poll);
	}
	requestAnimationFrame(poll);
})();`

// pageState is window.consoleState of the console page, plus what the
// DOM shows.
type pageState struct {
	Phase     string          `json:"phase"`
	Error     string          `json:"error"`
	Status    json.RawMessage `json:"status"`
	Encrypted string          `json:"encrypted"` // the indicator's text, "" when hidden
	ErrorText string          `json:"errorText"` // the error box's text, "" when hidden
	Canvas    bool            `json:"canvas"`
	// Times are when the page's steps happened, in ms since navigation
	// began: script, open (WebSocket), status, connected (RFB).
	Times map[string]float64 `json:"times"`
	// FirstFrame is window.firstFrame (see firstFrameProbe), 0 until then.
	FirstFrame float64 `json:"firstFrame"`
}

const pageStateJS = `JSON.stringify(Object.assign({}, window.consoleState || {}, {
	encrypted: document.getElementById("encrypted").hidden ? "" : document.getElementById("encrypted").textContent,
	errorText: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent,
	canvas: !!document.querySelector("#screen canvas"),
	firstFrame: window.firstFrame || 0,
}))`

func readPage(ctx context.Context) (pageState, error) {
	var st pageState
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](pageStateJS))
	if err != nil {
		return st, err
	}
	err = json.Unmarshal([]byte(s), &st)
	return st, err
}

// canvasImage returns the noVNC canvas as an image, or nil when there is
// none.
func canvasImage(ctx context.Context) (image.Image, error) {
	url, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(function () { var c = document.querySelector("#screen canvas"); return c ? c.toDataURL("image/png") : ""; })()`))
	data, ok := strings.CutPrefix(url, "data:image/png;base64,")
	if err != nil || !ok {
		return nil, err // no canvas, or an empty one ("data:,")
	}
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, err
	}
	return png.Decode(bytes.NewReader(b))
}

// maxChannelDiff is the tolerance of the comparison with screendump: the
// session is lossless (QEMU sends no JPEG without its lossy option), so
// only rounding may differ.
const maxChannelDiff = 8

// imageDiff returns the number of pixels of a whose colour differs from
// b's by more than maxChannelDiff in a channel, or is not opaque in a
// (a canvas not yet drawn is transparent black); -1 when the sizes
// differ.
func imageDiff(a, b image.Image) int {
	if a.Bounds() != b.Bounds() {
		return -1
	}
	n := 0
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			ar, ag, ab, aa := a.At(x, y).RGBA()
			br, bg, bb, _ := b.At(x, y).RGBA()
			if aa != 0xffff || absDiff(ar, br) > maxChannelDiff<<8 || absDiff(ag, bg) > maxChannelDiff<<8 || absDiff(ab, bb) > maxChannelDiff<<8 {
				n++
			}
		}
	}
	return n
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

// openConsole navigates to the console page with token and polls until
// the canvas matches want or the page shows an error. It returns the last
// page state, the canvas and the time to the first frame measured in the
// browser, from the start of the navigation to the page (see
// firstFrameProbe).
func openConsole(t *testing.T, ctx context.Context, url, token string, want image.Image) (pageState, image.Image, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// From another page: a change of fragment alone would not reload.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(url+"/console#"+token)))
	for {
		st, err := readPage(ctx)
		require.NoError(t, err)
		if st.Phase == "error" {
			return st, nil, 0
		}
		if st.Canvas && want != nil {
			img, err := canvasImage(ctx)
			require.NoError(t, err)
			if img != nil && imageDiff(img, want) == 0 {
				if st.FirstFrame == 0 { // drawn since readPage
					st, err = readPage(ctx)
					require.NoError(t, err)
				}
				require.NotZero(t, st.FirstFrame, "the probe saw no frame")
				return st, img, time.Duration(st.FirstFrame * float64(time.Millisecond))
			}
		}
		select {
		case <-ctx.Done():
			img, _ := canvasImage(context.Background())
			t.Fatalf("console did not show the guest's screen in time: %+v (canvas %v)", st, img != nil)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// artifactDir is where the test leaves its screenshots:
// $KVMPKI_ARTIFACTS/consoleproxy, or a temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("KVMPKI_ARTIFACTS"); d != "" {
		dir := filepath.Join(d, "consoleproxy")
		require.NoError(t, os.MkdirAll(dir, 0o755))
		return dir
	}
	return t.TempDir()
}

func savePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, img))
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
	t.Logf("saved %s", path)
}

// TestBrowserConsole is the end-to-end test: a real chromium runs the
// console page with noVNC against the proxy, which reaches a real QEMU
// with VNC-TLS (verify-peer=yes) and a VNC password.
func TestBrowserConsole(t *testing.T) {
	peers.Require(t, "qemu-system-x86_64")
	novncDir := requireNoVNC(t)
	f := newPKI(t)
	browser := newBrowser(t, f.webSPKIHash)
	p := startProxy(t, f, novncDir)
	const password = "s3cretpw"
	g := startGuest(t, f.caPEM, f.hostPEM, f.hostKey, password)
	host, portStr, _ := net.SplitHostPort(g.Addr)
	port, err := strconv.Atoi(portStr)
	require.NoError(t, err)
	target := Target{Host: host, Port: port, ServerName: "localhost", Password: password}
	mint := func(t *testing.T, target Target) string {
		tok, err := p.tokens.Mint(target, time.Now(), time.Minute)
		require.NoError(t, err)
		return tok
	}

	t.Run("console matches screendump", func(t *testing.T) {
		want := g.Screendump(t)
		require.Equal(t, image.Rect(0, 0, 640, 480), want.Bounds())
		st, img, ttff := openConsole(t, browser, p.URL, mint(t, target), want)
		require.Empty(t, st.Error)
		dir := artifactDir(t)
		savePNG(t, filepath.Join(dir, "browser-canvas.png"), img)
		savePNG(t, filepath.Join(dir, "qemu-screendump.png"), want)
		assert.Equal(t, want.Bounds(), img.Bounds())
		assert.Zero(t, imageDiff(img, want))
		assert.Equal(t, "connected", st.Phase)
		assert.Contains(t, st.Encrypted, "Encrypted (TLS 1.3, VeNCrypt X509Vnc (261), server CN=")
		var status status
		require.NoError(t, json.Unmarshal(st.Status, &status))
		assert.True(t, status.Encrypted)
		assert.Equal(t, "TLS 1.3", status.TLSVersion)
		assert.Equal(t, "RFB 3.8", status.Protocol)
		assert.NotEmpty(t, status.Issuer)
		t.Logf("time to first frame: %v", ttff)
	})

	t.Run("time to first frame", func(t *testing.T) {
		want := g.Screendump(t)
		var times []time.Duration
		for range 5 {
			st, _, ttff := openConsole(t, browser, p.URL, mint(t, target), want)
			t.Logf("first frame after %v; page steps (ms since navigation): %v", ttff.Round(time.Millisecond), st.Times)
			assert.Greater(t, ttff.Seconds()*1000, st.Times["connected"], "first frame before noVNC connected")
			times = append(times, ttff)
		}
		slices.Sort(times)
		t.Logf("time to first frame in the browser over %d runs: median %v, min %v, max %v (from the start of the navigation to the console page)",
			len(times), times[len(times)/2], times[0], times[len(times)-1])
	})

	t.Run("bad token", func(t *testing.T) {
		good := mint(t, target)
		for _, tc := range []struct{ name, token, want string }{
			{name: "garbage", token: "v1.garbage", want: "invalid console link"},
			{name: "tampered", token: good[:len(good)-2] + flipBase64(good[len(good)-2:]), want: "invalid console link"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, _, _ := openConsole(t, browser, p.URL, tc.token, nil)
				assert.Equal(t, "error", st.Phase)
				assert.Equal(t, tc.want, st.ErrorText)
				assert.False(t, st.Canvas, "canvas shown")
				assert.Empty(t, st.Encrypted)
			})
		}
	})

	t.Run("QEMU with a certificate from another CA", func(t *testing.T) {
		other := newPKI(t)
		bad := startGuest(t, other.caPEM, other.hostPEM, other.hostKey, password)
		host, portStr, _ := net.SplitHostPort(bad.Addr)
		port, err := strconv.Atoi(portStr)
		require.NoError(t, err)
		st, _, _ := openConsole(t, browser, p.URL, mint(t, Target{Host: host, Port: port, ServerName: "localhost", Password: password}), nil)
		assert.Equal(t, "error", st.Phase)
		assert.Equal(t, "the VM's console server presented an untrusted certificate", st.ErrorText)
		assert.False(t, st.Canvas, "canvas shown")
		assert.Empty(t, st.Encrypted)
	})
}

// flipBase64 changes the base64url characters of s, keeping them valid.
func flipBase64(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}
