package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

func TestCABundleHandler(t *testing.T) {
	e := newEnv(t, nil)
	h := e.m.CABundleHandler()
	rec := httpGet(t, h, "/ca.pem", nil)
	require.Equal(t, 200, rec.Code)
	assert.Equal(t, "application/x-pem-file", rec.Header().Get("Content-Type"))
	assert.Equal(t, string(provider.EncodeCertificates(e.caCert)), rec.Body.String())
	etag := rec.Header().Get("ETag")
	require.NotEmpty(t, etag)
	assert.Equal(t, 304, httpGet(t, h, "/ca.pem", http.Header{"If-None-Match": {etag}}).Code)
	req := httptest.NewRequest(http.MethodPost, "/ca.pem", nil)
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	assert.Equal(t, 405, rr.Code)
}

func TestCRLHandler(t *testing.T) {
	e := newEnv(t, nil)
	h := e.m.CRLHandler()
	res, _ := e.issue(t, provider.RoleHost, []string{"h.example"}, nil)

	rec := httpGet(t, h, "/crl", nil)
	require.Equal(t, 200, rec.Code)
	assert.Equal(t, "application/pkix-crl", rec.Header().Get("Content-Type"))
	crl, err := x509.ParseRevocationList(rec.Body.Bytes())
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(e.caCert))
	assert.Empty(t, crl.RevokedCertificateEntries)
	assert.Equal(t, crl.ThisUpdate.UTC().Format(http.TimeFormat), rec.Header().Get("Last-Modified"))
	assert.Equal(t, crl.NextUpdate.UTC().Format(http.TimeFormat), rec.Header().Get("Expires"))
	cc := rec.Header().Get("Cache-Control")
	require.True(t, strings.HasPrefix(cc, "public, max-age="), cc)
	maxAge, err := strconv.Atoi(strings.TrimPrefix(cc, "public, max-age="))
	require.NoError(t, err)
	assert.InDelta(t, time.Until(crl.NextUpdate).Seconds(), maxAge, 5)
	etag := rec.Header().Get("ETag")

	t.Run("not signed per request", func(t *testing.T) {
		again := httpGet(t, h, "/crl", nil)
		assert.Equal(t, rec.Body.Bytes(), again.Body.Bytes())
	})
	t.Run("conditional GET", func(t *testing.T) {
		assert.Equal(t, 304, httpGet(t, h, "/crl", http.Header{"If-None-Match": {etag}}).Code)
		assert.Equal(t, 304, httpGet(t, h, "/crl", http.Header{"If-Modified-Since": {rec.Header().Get("Last-Modified")}}).Code)
		assert.Equal(t, 200, httpGet(t, h, "/crl", http.Header{"If-None-Match": {`"other"`}}).Code)
	})
	t.Run("PEM on request", func(t *testing.T) {
		for _, r := range []*httptest.ResponseRecorder{
			httpGet(t, h, "/crl?format=pem", nil),
			httpGet(t, h, "/crl", http.Header{"Accept": {"application/x-pem-file"}}),
		} {
			require.Equal(t, 200, r.Code)
			block, _ := pem.Decode(r.Body.Bytes())
			require.NotNil(t, block)
			assert.Equal(t, "X509 CRL", block.Type)
			assert.Equal(t, crl.Raw, block.Bytes)
			assert.NotEqual(t, etag, r.Header().Get("ETag"))
		}
	})
	t.Run("revocation visible at once", func(t *testing.T) {
		start := time.Now()
		require.NoError(t, e.m.Revoke(context.Background(), &ca.RevokeRequest{Serial: res.Certificate.SerialNumber.Text(16), Reason: provider.ReasonSuperseded}))
		r := httpGet(t, h, "/crl", http.Header{"If-None-Match": {etag}})
		assert.Less(t, time.Since(start), time.Second)
		require.Equal(t, 200, r.Code, "the old ETag no longer matches")
		crl2, err := x509.ParseRevocationList(r.Body.Bytes())
		require.NoError(t, err)
		require.Len(t, crl2.RevokedCertificateEntries, 1)
		assert.Equal(t, res.Certificate.SerialNumber, crl2.RevokedCertificateEntries[0].SerialNumber)
		assert.Equal(t, 1, crl2.Number.Cmp(crl.Number))
	})
	t.Run("re-signed when NextUpdate nears", func(t *testing.T) {
		cur, err := x509.ParseRevocationList(httpGet(t, h, "/crl", nil).Body.Bytes())
		require.NoError(t, err)
		// Past half its lifetime: the current CRL is served while a new
		// one is signed in the background.
		e.clock.Set(cur.ThisUpdate.Add(cur.NextUpdate.Sub(cur.ThisUpdate)*3/4 + time.Hour))
		require.Eventually(t, func() bool {
			got, err := x509.ParseRevocationList(httpGet(t, h, "/crl", nil).Body.Bytes())
			return err == nil && got.Number.Cmp(cur.Number) > 0
		}, 5*time.Second, 10*time.Millisecond)
		// Past NextUpdate: a new one is signed before answering.
		e.clock.Set(cur.NextUpdate.Add(30 * 24 * time.Hour))
		got, err := x509.ParseRevocationList(httpGet(t, h, "/crl", nil).Body.Bytes())
		require.NoError(t, err)
		assert.True(t, got.NextUpdate.After(e.clock.Now()))
	})
}

func (e *env) ocspHandler(t testing.TB) http.Handler {
	t.Helper()
	h, err := e.m.OCSPHandler(&ca.OCSPResponder{Certificate: e.caCert, Signer: e.caKey})
	require.NoError(t, err)
	return h
}

func ocspQuery(t testing.TB, h http.Handler, issuer *x509.Certificate, serial *big.Int, post bool) *ocsp.Response {
	t.Helper()
	der, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: serial}, issuer, &ocsp.RequestOptions{Hash: crypto.SHA256})
	require.NoError(t, err)
	var req *http.Request
	if post {
		req = httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der))
		req.Header.Set("Content-Type", "application/ocsp-request")
	} else {
		req = httptest.NewRequest(http.MethodGet, "/ocsp/"+strings.ReplaceAll(base64.StdEncoding.EncodeToString(der), "/", "%2F"), nil)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, 200, rec.Code)
	assert.Equal(t, "application/ocsp-response", rec.Header().Get("Content-Type"))
	body, _ := io.ReadAll(rec.Body)
	resp, err := ocsp.ParseResponseForCert(body, &x509.Certificate{SerialNumber: serial}, issuer)
	require.NoError(t, err)
	return resp
}

func TestOCSPHandler(t *testing.T) {
	e := newEnv(t, nil)
	h := e.ocspHandler(t)
	good, _ := e.issue(t, provider.RoleHost, []string{"good.example"}, nil)
	bad, _ := e.issue(t, provider.RoleHost, []string{"bad.example"}, nil)

	t.Run("GET with unescaped slashes", func(t *testing.T) {
		// Find a serial whose request's base64 holds a '/'.
		for i := int64(1); i < 5000; i++ {
			der, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: big.NewInt(i)}, e.caCert, nil)
			require.NoError(t, err)
			b64 := base64.StdEncoding.EncodeToString(der)
			if !strings.Contains(b64, "/") {
				continue
			}
			for _, prefix := range []string{"/ocsp/", "/", "/a/b/"} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, prefix+b64, nil))
				resp, err := ocsp.ParseResponse(rec.Body.Bytes(), e.caCert)
				require.NoError(t, err, prefix)
				assert.Equal(t, ocsp.Unknown, resp.Status)
				assert.Equal(t, big.NewInt(i), resp.SerialNumber)
			}
			return
		}
		t.Fatal("no request with a '/' in its base64")
	})
	for _, post := range []bool{false, true} {
		name := map[bool]string{false: "GET", true: "POST"}[post]
		t.Run(name, func(t *testing.T) {
			r := ocspQuery(t, h, e.caCert, good.Certificate.SerialNumber, post)
			assert.Equal(t, ocsp.Good, r.Status)
			r = ocspQuery(t, h, e.caCert, big.NewInt(0x1234567), post)
			assert.Equal(t, ocsp.Unknown, r.Status, "a serial the CA never issued")
		})
	}

	// Cached, then revoked: the next answer says revoked at once.
	assert.Equal(t, ocsp.Good, ocspQuery(t, h, e.caCert, bad.Certificate.SerialNumber, true).Status)
	start := time.Now()
	require.NoError(t, e.m.Revoke(context.Background(), &ca.RevokeRequest{Serial: bad.Certificate.SerialNumber.Text(16), Reason: provider.ReasonKeyCompromise}))
	r := ocspQuery(t, h, e.caCert, bad.Certificate.SerialNumber, false)
	assert.Less(t, time.Since(start), time.Second)
	assert.Equal(t, ocsp.Revoked, r.Status)
	assert.Equal(t, ocsp.KeyCompromise, r.RevocationReason)
	assert.WithinDuration(t, time.Now(), r.RevokedAt, 2*time.Second)

	t.Run("malformed and foreign", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, "/ocsp", strings.NewReader("garbage"))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		resp, err := ocsp.ParseResponse(rec.Body.Bytes(), nil)
		assert.Nil(t, resp)
		var re ocsp.ResponseError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, ocsp.Malformed, re.Status)

		req = httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(make([]byte, 10000)))
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, 400, rec.Code, "oversized request")

		other := newEnv(t, nil)
		der, err := ocsp.CreateRequest(good.Certificate, other.caCert, nil)
		require.NoError(t, err)
		req = httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der))
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		_, err = ocsp.ParseResponse(rec.Body.Bytes(), nil)
		require.ErrorAs(t, err, &re)
		assert.Equal(t, ocsp.Unauthorized, re.Status)
	})
	_, err := e.m.OCSPHandler(&ca.OCSPResponder{Certificate: e.caCert})
	assert.Error(t, err, "a fallback responder without a key")
}

func TestOCSPWithoutInventory(t *testing.T) {
	e := newEnv(t, nil)
	// "bare" has no inventory and no CRL: an internal error, no panic.
	require.NoError(t, e.m.SetProvider(context.Background(), "bare"))
	h := e.ocspHandler(t)
	res, _ := e.issue(t, provider.RoleHost, []string{"h.example"}, nil)
	der, err := ocsp.CreateRequest(res.Certificate, e.caCert, nil)
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	_, err = ocsp.ParseResponse(rec.Body.Bytes(), nil)
	var re ocsp.ResponseError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, ocsp.InternalError, re.Status)
}
