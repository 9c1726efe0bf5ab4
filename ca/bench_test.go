package ca_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// revokedEnv is an env whose CA holds n revoked certificates, put into
// its store directly (issuing them one by one would take minutes).
func revokedEnv(b *testing.B, n int) *env {
	b.Helper()
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(b, err)
	store := rootca.NewMemStore()
	opts := rootca.Options{Signer: key, RevocationPollInterval: -1}
	created, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: opts})
	require.NoError(b, err)
	require.NoError(b, created.Close())
	now := time.Now()
	raw := []byte{0x30, 0x00}
	for i := 0; i < n; i++ {
		serial := big.NewInt(int64(1_000_000_000 + i))
		require.NoError(b, store.AddCertificate(ctx, &provider.CertificateRecord{
			Serial: serial, Subject: "CN=gone", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
			Role: provider.RoleHost, Raw: raw,
		}))
		_, err := store.Revoke(ctx, serial, provider.ReasonSuperseded, now)
		require.NoError(b, err)
	}
	opened, err := rootca.Open(ctx, store, &opts)
	require.NoError(b, err)
	b.Cleanup(func() { opened.Close() })
	reg := &provider.Registry{}
	require.NoError(b, reg.Register("root", "", func(context.Context) (provider.Provider, error) { return nopClose{opened}, nil }))
	m, err := ca.New(ctx, reg, nil)
	require.NoError(b, err)
	b.Cleanup(func() { m.Close() })
	return &env{m: m, reg: reg, caKey: key, caCert: opened.Certificate(), clock: &clock{}, root: opened}
}

// handshakeServer accepts connections on a loopback listener, runs the
// server handshake and reports its result.
func handshakeServer(b *testing.B, ln net.Listener, wrap func(net.Conn) *tls.Conn) chan error {
	done := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := wrap(c)
			err = tc.Handshake()
			tc.Close()
			done <- err
		}
	}()
	return done
}

// BenchmarkAgentHandshake compares full mutual-TLS handshakes on the
// agent port (every check on, a CA with 1,000,000 revoked serials) with
// a plain crypto/tls server using RequireAndVerifyClientCert and the same
// keys, alternating the two in one loop. The metric ours/plain is the
// ratio of handshakes per second (goal: >= 0.95).
func BenchmarkAgentHandshake(b *testing.B) {
	e := revokedEnv(b, 1_000_000)
	id := e.identity(b)
	_, client := e.issue(b, provider.RoleHost, []string{"agent.example"}, nil)

	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	defer plainLn.Close()
	plainCfg := &tls.Config{GetCertificate: id.GetCertificate, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: e.pool(), MinVersion: tls.VersionTLS12}
	plainDone := handshakeServer(b, plainLn, func(c net.Conn) *tls.Conn { return tls.Server(c, plainCfg) })

	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	agentLn, err := e.m.NewAgentListener(inner, &ca.AgentServerConfig{Identity: id})
	require.NoError(b, err)
	defer agentLn.Close()
	oursDone := handshakeServer(b, agentLn, func(c net.Conn) *tls.Conn { return c.(*ca.AgentConn).Conn })

	clientCfg := e.clientConfig(&client)
	clientCfg.ServerName = "127.0.0.1"
	one := func(addr string, done chan error) time.Duration {
		start := time.Now()
		c, err := tls.Dial("tcp", addr, clientCfg)
		require.NoError(b, err)
		require.NoError(b, <-done)
		d := time.Since(start)
		c.Close()
		return d
	}
	// Warm up both.
	one(plainLn.Addr().String(), plainDone)
	one(inner.Addr().String(), oursDone)
	plain := make([]time.Duration, 0, b.N)
	ours := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			plain = append(plain, one(plainLn.Addr().String(), plainDone))
			ours = append(ours, one(inner.Addr().String(), oursDone))
		} else {
			ours = append(ours, one(inner.Addr().String(), oursDone))
			plain = append(plain, one(plainLn.Addr().String(), plainDone))
		}
	}
	b.StopTimer()
	// Medians: the CA's million revocations make the garbage collector
	// pause whichever handshake happens to run, which sums would count.
	mPlain, mOurs := median(plain), median(ours)
	b.ReportMetric(float64(mPlain)/float64(mOurs), "ours/plain")
	b.ReportMetric(float64(time.Second)/float64(mOurs), "ours-handshakes/s")
	b.ReportMetric(float64(time.Second)/float64(mPlain), "plain-handshakes/s")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// discardWriter is an http.ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkCRLServing compares serving the CRL of 100,000 revocations
// from the handler with signing it (goal: >= 50x faster).
func BenchmarkCRLServing(b *testing.B) {
	e := revokedEnv(b, 100_000)
	h := e.m.CRLHandler()
	req := httptest.NewRequest(http.MethodGet, "/crl", nil)
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, req) // the first request signs
	ctx := context.Background()
	const signs = 3
	start := time.Now()
	for i := 0; i < signs; i++ {
		_, err := e.root.SignCRL(ctx)
		require.NoError(b, err)
	}
	perSign := time.Since(start) / signs
	b.ResetTimer()
	start = time.Now()
	for i := 0; i < b.N; i++ {
		w.h = http.Header{}
		h.ServeHTTP(w, req)
	}
	perServe := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(perSign)/float64(perServe), "sign/serve")
	b.ReportMetric(float64(perSign.Microseconds()), "sign-µs")
}

// BenchmarkOCSPCached compares an OCSP answer served from the cache with
// one signed afresh (goal: >= 10x faster).
func BenchmarkOCSPCached(b *testing.B) {
	e := newEnv(b, nil)
	h := e.ocspHandler(b)
	res, _ := e.issue(b, provider.RoleHost, []string{"h.example"}, nil)
	der, err := ocsp.CreateRequest(res.Certificate, e.caCert, nil)
	require.NoError(b, err)
	req := httptest.NewRequest(http.MethodPost, "/ocsp", nil)
	w := &discardWriter{}
	body := bytes.NewReader(der)
	rc := io.NopCloser(body)
	serve := func() {
		body.Reset(der)
		req.Body = rc
		w.h = http.Header{}
		h.ServeHTTP(w, req)
	}
	serve()
	// Signing: what a cache miss costs, the status lookup and the
	// signature.
	const signs = 200
	start := time.Now()
	for i := 0; i < signs; i++ {
		tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: res.Certificate.SerialNumber, ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}
		_, err := e.root.LookupCertificate(context.Background(), res.Certificate.SerialNumber)
		require.NoError(b, err)
		_, err = ocsp.CreateResponse(e.caCert, e.caCert, tmpl, e.caKey)
		require.NoError(b, err)
	}
	perSign := time.Since(start) / signs
	b.ResetTimer()
	start = time.Now()
	for i := 0; i < b.N; i++ {
		serve()
	}
	perServe := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(perSign)/float64(perServe), "sign/cached")
}
