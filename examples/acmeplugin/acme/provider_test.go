package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/acme"

	"github.com/kvmpki/kvmpki/examples/acmeplugin/internal/pebbletest"
	"github.com/kvmpki/kvmpki/provider"
)

// TestMapError: ACME problems become the contract's errors, so that a
// platform branches on them without knowing ACME.
func TestMapError(t *testing.T) {
	header := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name        string
		err         error
		want        []error // errors.Is must hold for each
		retryAfter  time.Duration
		unsupported bool
	}{
		{name: "rateLimited", err: &acme.Error{StatusCode: 429, ProblemType: problemPrefix + "rateLimited", Header: header("Retry-After", "120")},
			want: []error{provider.ErrRetryLater}, retryAfter: 120 * time.Second},
		{name: "unavailable", err: &acme.Error{StatusCode: 503, ProblemType: problemPrefix + "serverInternal", Header: header("Retry-After", "30")},
			want: []error{provider.ErrRetryLater}, retryAfter: 30 * time.Second},
		{name: "rejectedIdentifier", err: &acme.Error{StatusCode: 400, ProblemType: problemPrefix + "rejectedIdentifier"},
			want: []error{provider.ErrInvalidRequest}},
		{name: "badCSR", err: &acme.Error{StatusCode: 400, ProblemType: problemPrefix + "badCSR"},
			want: []error{provider.ErrInvalidRequest}},
		{name: "unsupportedIdentifier", err: &acme.Error{StatusCode: 400, ProblemType: problemPrefix + "unsupportedIdentifier"},
			want: []error{provider.ErrInvalidRequest, errors.ErrUnsupported}, unsupported: true},
		{name: "badRevocationReason", err: &acme.Error{StatusCode: 400, ProblemType: problemPrefix + "badRevocationReason"},
			want: []error{provider.ErrInvalidRequest, errors.ErrUnsupported}, unsupported: true},
		{name: "alreadyRevoked", err: &acme.Error{StatusCode: 400, ProblemType: problemPrefix + "alreadyRevoked"},
			want: []error{provider.ErrAlreadyRevoked}},
		{name: "notFound", err: &acme.Error{StatusCode: 404, ProblemType: problemPrefix + "malformed"},
			want: []error{provider.ErrNotFound}},
		{name: "orderInvalid", err: &acme.OrderError{OrderURL: "https://ca/order/1", Status: "invalid",
			Problem: &acme.Error{StatusCode: 403, ProblemType: problemPrefix + "unauthorized"}},
			want: []error{provider.ErrInvalidRequest}},
		{name: "authorizationFailed", err: &acme.AuthorizationError{URI: "https://ca/authz/1", Identifier: "kvm1.example.org"},
			want: []error{provider.ErrInvalidRequest}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			got := mapError(fmt.Errorf("wrapped: %w", tc.err))
			for _, w := range tc.want {
				assert.ErrorIs(t, got, w)
			}
			assert.Equal(t, tc.unsupported, errors.Is(got, errors.ErrUnsupported), "errors.ErrUnsupported")
			var rl *provider.RetryLaterError
			if tc.retryAfter > 0 && assert.ErrorAs(t, got, &rl) {
				assert.WithinRange(t, rl.After, before.Add(tc.retryAfter), time.Now().Add(tc.retryAfter))
			}
		})
	}
	t.Run("rateLimitedHugeRetryAfter", func(t *testing.T) {
		for _, v := range []string{"9227000000", "1000000000000"} {
			got := mapError(&acme.Error{StatusCode: 429, ProblemType: problemPrefix + "rateLimited", Header: header("Retry-After", v)})
			var rl *provider.RetryLaterError
			require.ErrorAs(t, got, &rl)
			if !rl.After.IsZero() {
				assert.WithinRange(t, rl.After, time.Now(), time.Now().Add(maxRetryAfter), "Retry-After %s", v)
			}
		}
	})
	t.Run("other", func(t *testing.T) {
		err := errors.New("connection refused")
		assert.Same(t, err, mapError(err))
	})
}

// TestSameNames: with a CSR, the request must vouch for exactly the CSR's
// names, since an ACME CA certifies the CSR's names and adds none.
func TestSameNames(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	csr := func(cn string, dns []string, ips []net.IP) *x509.CertificateRequest {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: cn}, DNSNames: dns, IPAddresses: ips,
		}, key)
		require.NoError(t, err)
		c, err := x509.ParseCertificateRequest(der)
		require.NoError(t, err)
		return c
	}
	ip := net.ParseIP("192.0.2.7").To4()
	tests := []struct {
		name        string
		csr         *x509.CertificateRequest
		dns         []string
		ips         []net.IP
		cn          string
		ok          bool
		unsupported bool
	}{
		{name: "same", csr: csr("a.example", []string{"a.example", "B.example"}, []net.IP{ip}), dns: []string{"b.example", "a.example"}, ips: []net.IP{ip}, ok: true},
		{name: "unvouchedCSRName", csr: csr("", []string{"a.example", "evil.example"}, nil), dns: []string{"a.example"}},
		{name: "unvouchedCSRIP", csr: csr("", []string{"a.example"}, []net.IP{ip}), dns: []string{"a.example"}},
		{name: "nameToAdd", csr: csr("", []string{"a.example"}, nil), dns: []string{"a.example", "b.example"}, unsupported: true},
		{name: "ipToAdd", csr: csr("", []string{"a.example"}, nil), dns: []string{"a.example"}, ips: []net.IP{ip}, unsupported: true},
		{name: "noNames", csr: csr("a.example", nil, nil)},
		{name: "unvouchedCommonName", csr: csr("evil.example", []string{"a.example"}, nil), dns: []string{"a.example"}},
		{name: "otherRequestedCommonName", csr: csr("a.example", []string{"a.example", "b.example"}, nil), dns: []string{"a.example", "b.example"}, cn: "b.example", unsupported: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dns, ips := normalize(tc.dns, tc.ips)
			err := sameNames(tc.csr, dns, ips, tc.cn)
			if tc.ok {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, provider.ErrInvalidRequest)
			assert.Equal(t, tc.unsupported, errors.Is(err, errors.ErrUnsupported), "errors.ErrUnsupported: %v", err)
		})
	}
}

// TestNewRefusesConfig: a Config missing what the provider cannot guess
// is refused before any request to the CA.
func TestNewRefusesConfig(t *testing.T) {
	root, inter := testChain(t)
	good := func() *Config {
		return &Config{DirectoryURL: "https://127.0.0.1:1/dir", AccountKey: pebbletest.NewAccountKey(t),
			CACertificates: []*x509.Certificate{inter, root}, Solver: &HTTP01Solver{}}
	}
	tests := []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{name: "directory", edit: func(c *Config) { c.DirectoryURL = "" }, want: "DirectoryURL"},
		{name: "accountKey", edit: func(c *Config) { c.AccountKey = nil }, want: "AccountKey"},
		{name: "solver", edit: func(c *Config) { c.Solver = nil }, want: "Solver"},
		{name: "noChain", edit: func(c *Config) { c.CACertificates = nil }, want: "CACertificates is required"},
		{name: "noRoot", edit: func(c *Config) { c.CACertificates = c.CACertificates[:1] }, want: "signed by no certificate listed after it"},
		{name: "wrongOrder", edit: func(c *Config) { slices.Reverse(c.CACertificates) }, want: "signed by no certificate listed after it"},
		{name: "role", edit: func(c *Config) { c.Role = 9 }, want: "Role"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(c)
			p, err := New(t.Context(), c)
			assert.ErrorContains(t, err, tc.want)
			assert.Nil(t, p)
		})
	}
}

// testChain returns a root and an intermediate CA it signed.
func testChain(t *testing.T) (root, inter *x509.Certificate) {
	t.Helper()
	mk := func(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c, key
	}
	root, rootKey := mk("root", nil, nil)
	inter, _ = mk("intermediate", root, rootKey)
	return root, inter
}

// TestSeveralIssuingCAs: with several issuing CAs configured, as Let's
// Encrypt issues from R10 and R11, the plugin accepts a certificate from
// any of them and returns its own path as the chain: another issuing CA
// listed first (with its root) does not stop issuance, renewal,
// revocation or peer verification.
func TestSeveralIssuingCAs(t *testing.T) {
	pb := pebbletest.Start(t)
	otherRoot, otherInter := testChain(t)
	cas := append([]*x509.Certificate{otherInter, otherRoot}, pb.Chain...)
	reg := &provider.Registry{}
	require.NoError(t, reg.Register("acme", "ACME CA (Pebble)", Factory(Config{
		DirectoryURL: pb.Directory, AccountKey: pebbletest.NewAccountKey(t), HTTPClient: pb.Client,
		CACertificates: cas, Solver: &HTTP01Solver{},
	})))
	p, err := reg.Open(t.Context(), "acme")
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	ctx := t.Context()

	got, err := p.CACertificates(ctx)
	require.NoError(t, err)
	assert.Len(t, got, 4, "every configured CA certificate")
	res, err := p.Issue(ctx, &provider.IssueRequest{DNSNames: []string{"kvm1.kvm.example.test"}, Role: provider.RoleHost})
	require.NoError(t, err)
	require.Len(t, res.Chain, 2, "the path of this certificate: Pebble's intermediate and root")
	assert.True(t, res.Chain[0].Equal(pb.Chain[0]) && res.Chain[1].Equal(pb.Chain[1]))
	tc, err := res.TLSCertificate()
	require.NoError(t, err)
	certs := make([]*x509.Certificate, 0, len(tc.Certificate))
	for _, der := range tc.Certificate {
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		certs = append(certs, c)
	}
	assert.NoError(t, provider.VerifyPeer(ctx, p, &provider.VerifyRequest{Certificates: certs, Usage: provider.UsageClientAuth}))
	require.NoError(t, p.Revoke(ctx, &provider.RevokeRequest{Certificate: res.Certificate, Reason: provider.ReasonSuperseded}))
	assert.Equal(t, "Revoked", pb.Status(t, res.Certificate.SerialNumber))
}

// TestRevokeOnPebble: a revocation reaches the CA (Pebble's management
// port reports it), goes by certificate only, refuses a certificate of
// another CA as unknown, and the provider refuses work after Close.
func TestRevokeOnPebble(t *testing.T) {
	pb := pebbletest.Start(t)
	p := newPebbleProvider(t, pb)
	ctx := t.Context()
	res, err := p.Issue(ctx, &provider.IssueRequest{DNSNames: []string{"kvm1.kvm.example.test"}, Role: provider.RoleHost})
	require.NoError(t, err)
	c := res.Certificate
	require.Equal(t, "Valid", pb.Status(t, c.SerialNumber))

	err = p.Revoke(ctx, &provider.RevokeRequest{Serial: c.SerialNumber, Reason: provider.ReasonKeyCompromise})
	assert.ErrorIs(t, err, errors.ErrUnsupported, "a serial alone")
	assert.ErrorIs(t, err, provider.ErrInvalidRequest, "a serial alone")
	assert.Equal(t, "Valid", pb.Status(t, c.SerialNumber))

	err = p.Revoke(ctx, &provider.RevokeRequest{Certificate: c, Reason: provider.RevocationReason(7)})
	assert.ErrorIs(t, err, provider.ErrInvalidRequest, "reason 7")

	require.NoError(t, p.Revoke(ctx, &provider.RevokeRequest{Certificate: c, Reason: provider.ReasonKeyCompromise}))
	assert.Equal(t, "Revoked", pb.Status(t, c.SerialNumber))
	assert.ErrorIs(t, p.Revoke(ctx, &provider.RevokeRequest{Certificate: c}), provider.ErrAlreadyRevoked)

	root, _ := testChain(t)
	assert.ErrorIs(t, p.Revoke(ctx, &provider.RevokeRequest{Certificate: root}), provider.ErrNotFound, "another CA's certificate")

	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close twice")
	_, err = p.Issue(ctx, &provider.IssueRequest{DNSNames: []string{"kvm2.kvm.example.test"}, Role: provider.RoleHost})
	assert.ErrorIs(t, err, errClosed)
	_, err = p.CACertificates(ctx)
	assert.ErrorIs(t, err, errClosed)
}

// TestIssueLatency measures the time to issue one certificate through
// Pebble: order, authorization, finalization and download, for a
// generated ECDSA P-256 key and a name never ordered before.
func TestIssueLatency(t *testing.T) {
	pb := pebbletest.Start(t)
	p := newPebbleProvider(t, pb)
	const n = 21
	times := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		_, err := p.Issue(t.Context(), &provider.IssueRequest{DNSNames: []string{fmt.Sprintf("lat-%d.kvm.example.test", i)}, Role: provider.RoleHost})
		require.NoError(t, err)
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	// x/crypto/acme's WaitOrder sleeps a second when Pebble is still
	// finalizing at its first poll (Pebble sends no Retry-After), so the
	// times cluster at a few milliseconds and at one second.
	slow := len(times) - slices.IndexFunc(times, func(d time.Duration) bool { return d >= 900*time.Millisecond })
	if slow > len(times) {
		slow = 0
	}
	t.Logf("issue through Pebble, %d certificates: min %v, median %v, max %v; %d of %d waited for x/crypto's one-second poll",
		n, times[0], times[n/2], times[n-1], slow, n)
	assert.Less(t, times[n/2], 5*time.Second, "median issue time")
}

// TestIssueRefusals: what the CA decides, or cannot certify, is refused
// before any order, as provider.Unsupported when the request is valid
// but needs what an ACME CA does not offer.
func TestIssueRefusals(t *testing.T) {
	pb := pebbletest.Start(t)
	p := newPebbleProvider(t, pb)
	name := "kvm1.kvm.example.test"
	tests := []struct {
		name        string
		req         provider.IssueRequest
		unsupported bool
	}{
		{name: "clientRole", req: provider.IssueRequest{DNSNames: []string{name}, Role: provider.RoleClient}, unsupported: true},
		{name: "serverRole", req: provider.IssueRequest{DNSNames: []string{name}, Role: provider.RoleServer}, unsupported: true},
		{name: "validity", req: provider.IssueRequest{DNSNames: []string{name}, Role: provider.RoleHost, Validity: time.Hour}, unsupported: true},
		{name: "commonNameNotAName", req: provider.IssueRequest{DNSNames: []string{name}, CommonName: "other.kvm.example.test", Role: provider.RoleHost}, unsupported: true},
		{name: "curveP521", req: provider.IssueRequest{DNSNames: []string{name}, Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA, KeySize: 521}, unsupported: true},
		{name: "rsa1024", req: provider.IssueRequest{DNSNames: []string{name}, Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmRSA, KeySize: 1024}},
		{name: "noNames", req: provider.IssueRequest{Role: provider.RoleHost}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := p.Issue(t.Context(), &tc.req)
			assert.Nil(t, res)
			assert.ErrorIs(t, err, provider.ErrInvalidRequest)
			assert.Equal(t, tc.unsupported, errors.Is(err, errors.ErrUnsupported), "errors.ErrUnsupported: %v", err)
		})
	}
}

// TestIssueChecksWhatCAReturns: a certificate the CA issued in another
// role than the configured one (here Pebble 2.4's host role for a
// provider configured for server) is not handed out but revoked at the
// CA.
func TestIssueChecksWhatCAReturns(t *testing.T) {
	pb := pebbletest.Start(t)
	p, err := New(t.Context(), &Config{DirectoryURL: pb.Directory, AccountKey: pebbletest.NewAccountKey(t), HTTPClient: pb.Client,
		CACertificates: pb.Chain, Solver: &HTTP01Solver{}, Role: provider.RoleServer})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	res, err := p.Issue(t.Context(), &provider.IssueRequest{DNSNames: []string{"kvm1.kvm.example.test"}, Role: provider.RoleServer})
	assert.Nil(t, res)
	require.ErrorContains(t, err, "has the host role, not the configured server")
	m := regexp.MustCompile(`serial ([0-9a-f]+)`).FindStringSubmatch(err.Error())
	require.Len(t, m, 2, "the error names the serial: %v", err)
	serial, ok := new(big.Int).SetString(m[1], 16)
	require.True(t, ok)
	assert.Equal(t, "Revoked", pb.Status(t, serial))
}

// FuzzRetryAfter: a CA's Retry-After header, as seconds or an HTTP date,
// never panics, and seconds never yield a time in the past or beyond
// maxRetryAfter (9227000000 seconds once overflowed into 1734).
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "0", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "", "99999999999999999999", " 7 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		before := time.Now()
		got := retryAfter(http.Header{"Retry-After": []string{v}})
		if _, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && !got.IsZero() {
			assert.False(t, got.Before(before), "Retry-After %q gave %v", v, got)
			assert.False(t, got.After(time.Now().Add(maxRetryAfter)), "Retry-After %q gave %v", v, got)
		}
	})
}

// TestHTTP01Solver: a presented token is served with its key
// authorization at /.well-known/acme-challenge/TOKEN until withdrawn, and
// nothing else is.
func TestHTTP01Solver(t *testing.T) {
	client := &acme.Client{Key: pebbletest.NewAccountKey(t)}
	s := &HTTP01Solver{}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	withdraw, err := s.Present(t.Context(), client, acme.AuthzID{Type: "dns", Value: "kvm1.example.org"}, &acme.Challenge{Type: "http-01", Token: "tok-1"})
	require.NoError(t, err)
	want, err := client.HTTP01ChallengeResponse("tok-1")
	require.NoError(t, err)
	get := func(method, path string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		require.NoError(t, err)
		res, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(body)
	}
	tests := []struct {
		name, method, path string
		status             int
	}{
		{name: "presented", method: http.MethodGet, path: http01Prefix + "tok-1", status: http.StatusOK},
		{name: "unknownToken", method: http.MethodGet, path: http01Prefix + "tok-2", status: http.StatusNotFound},
		{name: "otherPath", method: http.MethodGet, path: "/tok-1", status: http.StatusNotFound},
		{name: "post", method: http.MethodPost, path: http01Prefix + "tok-1", status: http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := get(tc.method, tc.path)
			assert.Equal(t, tc.status, status)
			if tc.status == http.StatusOK {
				assert.Equal(t, want, body)
			}
		})
	}
	withdraw()
	status, _ := get(http.MethodGet, http01Prefix+"tok-1")
	assert.Equal(t, http.StatusNotFound, status, "after withdraw")
}
