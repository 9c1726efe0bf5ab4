package ca_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/ca"
)

// FuzzParseSerial: no panic; an accepted serial is positive and parses
// back from its own hex.
func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"1", "0a:bc:DE", "0x00ff", "000000001", "", "zz", ":::", strings.Repeat("f", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ca.ParseSerial(s)
		if err != nil {
			assert.ErrorIs(t, err, ca.ErrInvalidRequest)
			return
		}
		require.Positive(t, n.Sign())
		back, err := ca.ParseSerial(n.Text(16))
		require.NoError(t, err)
		assert.Zero(t, back.Cmp(n))
	})
}

// FuzzOCSPRequest: whatever a client posts, the responder answers with
// an OCSP response (or 400 for an oversized one) and never panics.
// Seeded from testdata/ocsp-*.der.
func FuzzOCSPRequest(f *testing.F) {
	addSeedFiles(f, "ocsp-*.der")
	f.Add([]byte{0x30, 0x03, 0x30, 0x01, 0x00})
	e := newEnv(f, nil)
	h := e.ocspHandler(f)
	f.Fuzz(func(t *testing.T, der []byte) {
		req := httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusBadRequest {
			return
		}
		require.Equal(t, http.StatusOK, rec.Code)
		_, err := ocsp.ParseResponse(rec.Body.Bytes(), nil)
		if err != nil {
			var re ocsp.ResponseError
			assert.ErrorAs(t, err, &re)
		}
	})
}

// addSeedFiles adds the files of testdata matching pattern to f's
// corpus; a pattern that matches none is an error, so that a seed set
// cannot go missing unnoticed.
func addSeedFiles(f *testing.F, pattern string) {
	f.Helper()
	seeds, err := filepath.Glob(filepath.Join("testdata", pattern))
	require.NoError(f, err)
	require.NotEmpty(f, seeds, "no seed in testdata/%s", pattern)
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		require.NoError(f, err)
		f.Add(b)
	}
}
