package rfb_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"flag"

	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rfb"
)

var updateSeeds = flag.Bool("update", false, "rewrite the fuzz seed corpus under testdata/fuzz")

// handshakeSeeds are server byte streams for FuzzHandshake: what QEMU,
// TigerVNC and odd servers send, up to where the script runs out.
func handshakeSeeds() map[string][]byte {
	vncAuthFail := []byte("RFB 003.008\n\x01\x02")
	vncAuthFail = append(vncAuthFail, make([]byte, 16)...)
	vncAuthFail = append(vncAuthFail, 0, 0, 0, 1, 0, 0, 0, 22)
	vncAuthFail = append(vncAuthFail, "Authentication failed\x00"...)
	return map[string][]byte{
		"none-3.8": handshakeNone38(),
		"none-3.8-with-messages": append(handshakeNone38(), append(append([]byte{2},
			cutText(2, "hi")...), fbUpdate(append(rectHeader(0, 0, 1, 1, rfb.EncodingRaw), 1, 2, 3, 4))...)...),
		"none-3.3":          append([]byte("RFB 003.003\n\x00\x00\x00\x01"), handshakeNone38()[18:]...),
		"refused-3.8":       []byte("RFB 003.008\n\x00\x00\x00\x00\x0eno connections"),
		"blacklisted-3.3":   []byte("RFB 003.003\n\x00\x00\x00\x00\x00\x00\x00\x1aToo many security failures"),
		"vncauth-failed":    vncAuthFail,
		"qemu-x509vnc-tls":  []byte("RFB 003.008\n\x01\x13\x00\x02\x00\x01\x00\x00\x01\x05\x01\x16\x03\x03\x00\x02\x02\x28"),
		"tigervnc-subtypes": []byte("RFB 003.008\n\x01\x13\x00\x02\x00\x02\x00\x00\x01\x02\x00\x00\x01\x05\x01"),
		"vencrypt-0.1":      []byte("RFB 003.008\n\x01\x13\x00\x01"),
		"anonymous-only":    []byte("RFB 003.008\n\x01\x13\x00\x02\x00\x01\x00\x00\x01\x02"),
		"huge-reason":       []byte("RFB 003.008\n\x00\xff\xff\xff\xff"),
		"huge-name":         append(handshakeNone38()[:38], 0xff, 0xff, 0xff, 0xff),
	}
}

// messageSeeds are server message streams for FuzzServerMessages.
func messageSeeds() map[string][]byte {
	colourMap := binary.BigEndian.AppendUint16([]byte{1, 0}, 0)
	colourMap = binary.BigEndian.AppendUint16(colourMap, 1)
	colourMap = append(colourMap, 0xff, 0xff, 0, 0, 0, 0)
	return map[string][]byte{
		"bell":         {2},
		"cut-text":     cutText(5, "hello"),
		"raw":          fbUpdate(append(rectHeader(0, 0, 2, 1, rfb.EncodingRaw), 1, 2, 3, 4, 5, 6, 7, 8)),
		"desktop-size": fbUpdate(rectHeader(0, 0, 100, 50, rfb.EncodingDesktopSize), append(rectHeader(99, 49, 1, 1, rfb.EncodingRaw), 1, 2, 3, 4)),
		"colour-map":   colourMap,
		"ext-desktop":  fbUpdate(rectHeader(0, 0, 64, 48, -308)),
		// Issue 11 item 4: 40 sizes in one update, over the fuzz limit
		// (the 484 bytes) and within it, with pixels between.
		"desktop-size-flood-8k": desktopSizeFlood(40, 7680, 4320, false),
		"desktop-size-flood":    desktopSizeFlood(40, 256, 256, true),
	}
}

// viewerSeeds are viewer byte streams for FuzzAcceptViewer: the
// handshake of each version, then client messages, and hostile lengths.
func viewerSeeds() map[string][]byte {
	pf, _ := rfb.PixelFormatRGBA().AppendBinary([]byte{0, 0, 0, 0})
	encodings := []byte{2, 0, 0, 3, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21, 0xff, 0xff, 0xfe, 0xcc}
	update := []byte{3, 0, 0, 0, 0, 0, 0, 64, 0, 48}
	v38 := []byte("RFB 003.008\n\x01\x01")
	return map[string][]byte{
		"noVNC-3.8":            append(append(append(append(v38, pf...), encodings...), update...), 4, 1, 0, 0, 0, 0, 0xff, 0x0d, 5, 1, 0, 10, 0, 10),
		"3.7":                  []byte("RFB 003.007\n\x01\x00\x03\x01\x00\x00\x00\x00\x00\x08\x00\x08"),
		"3.3":                  []byte("RFB 003.003\n\x01\x06\x00\x00\x00\x00\x00\x00\x02hi"),
		"wrong-security":       []byte("RFB 003.008\n\x02"),
		"encodings-count-only": append(v38, 2, 0, 0xff, 0xff, 0, 0, 0, 0),
		"cut-text-huge":        append(v38, 6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 'x'),
		"cut-text-extended":    append(v38, 6, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0),
		"pixel-format-24bpp":   append(v38, 0, 0, 0, 0, 24, 24, 0, 1, 0, 0xff, 0, 0xff, 0, 0xff, 16, 8, 0, 0, 0, 0),
		"unknown-message":      append(v38, 0xff, 0, 0, 0),
		"version-not-rfb":      []byte("GET / HTTP/1.1\r\n\r\n"),
	}
}

// TestFuzzSeeds keeps testdata/fuzz in step with the seed builders;
// go test -run TestFuzzSeeds -update rewrites it.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range map[string]map[string][]byte{
		"FuzzHandshake":      handshakeSeeds(),
		"FuzzServerMessages": messageSeeds(),
		"FuzzAcceptViewer":   viewerSeeds(),
	} {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, seed := range seeds {
			path := filepath.Join(dir, name)
			want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(seed)) + ")\n"
			if *updateSeeds {
				require.NoError(t, os.MkdirAll(dir, 0o755))
				require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
				continue
			}
			got, err := os.ReadFile(path)
			require.NoError(t, err, "run go test -run TestFuzzSeeds -update")
			assert.Equal(t, want, string(got), path)
		}
	}
}

// fuzzConfig accepts every method, with small limits so that the fuzzer
// does not spend its time allocating.
func fuzzConfig() *rfb.Config {
	return &rfb.Config{
		Security: []rfb.Security{rfb.SecurityX509Vnc, rfb.SecurityX509None, rfb.SecurityX509Plain,
			rfb.SecurityVNCAuth, rfb.SecurityNone, rfb.SecurityPlain},
		InsecureAllowPlainPassword: true,
		TLSConfig:                  &tls.Config{ServerName: "localhost", RootCAs: x509.NewCertPool()},
		Password:                   passwordFunc("s3cret"),
		MaxFramebufferPixels:       1 << 16,
		MaxCutText:                 1 << 10,
	}
}

// checkFuzzError fails unless err is one of the package's own.
func checkFuzzError(t *testing.T, err error) {
	t.Helper()
	if !strings.HasPrefix(err.Error(), "rfb: ") {
		t.Fatalf("error without the package prefix: %v", err)
	}
}

// readAll reads messages until the script runs out.
func readAll(t *testing.T, c *rfb.Conn) {
	fb := rfb.NewFramebuffer(c.Size())
	for range 1 << 16 {
		if _, err := c.ReadMessage(context.Background(), fb); err != nil {
			checkFuzzError(t, err)
			return
		}
	}
	t.Fatal("more messages than the script can hold")
}

// FuzzHandshake runs the client handshake against arbitrary server bytes:
// it must end with the package's error or a connection, never a panic or
// an allocation beyond the limits.
func FuzzHandshake(f *testing.F) {
	for _, seed := range handshakeSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		c, err := rfb.Client(context.Background(), newScriptConn(script), fuzzConfig())
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		if st := c.ConnectionState(); st.Security.Encrypted() {
			t.Fatalf("a TLS session from a script: %v", st)
		}
		readAll(t, c)
	})
}

// FuzzServerMessages feeds arbitrary server messages to an established
// connection.
func FuzzServerMessages(f *testing.F) {
	for _, seed := range messageSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msgs []byte) {
		c, err := scriptedClient(msgs, fuzzConfig())
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		readAll(t, c)
	})
}

// FuzzAcceptViewer runs the viewer side of a console proxy against
// arbitrary viewer bytes: the handshake, then ReadMessage until the
// script runs out. It must end with the package's error, never a panic,
// and allocate only what the limits allow (cut text is bounded by
// MaxCutText and grows with the bytes that arrive; the encodings list by
// its U16 count).
func FuzzAcceptViewer(f *testing.F) {
	for _, seed := range viewerSeeds() {
		f.Add(seed)
	}
	init := rfb.ServerInit{Width: 64, Height: 48, PixelFormat: rfb.PixelFormatRGBA(), Name: "fuzz"}
	f.Fuzz(func(t *testing.T, script []byte) {
		v, err := rfb.AcceptViewer(context.Background(), newScriptConn(script), init, &rfb.AcceptViewerOptions{MaxCutText: 1 << 10})
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		for range 1 << 16 {
			m, err := v.ReadMessage(context.Background())
			if err != nil {
				checkFuzzError(t, err)
				return
			}
			if len(m.Text) > 1<<10 || len(m.Encodings) > 0xffff {
				t.Fatalf("a message over the limits: %d bytes of text, %d encodings", len(m.Text), len(m.Encodings))
			}
			if m.Type == rfb.ClientSetPixelFormat {
				if err := m.PixelFormat.Validate(); err != nil {
					t.Fatalf("an invalid pixel format accepted: %v", err)
				}
			}
		}
		t.Fatal("more messages than the script can hold")
	})
}
