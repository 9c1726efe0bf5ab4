package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

func csrPEM(t *testing.T, cn string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func parseCert(t *testing.T, s any) *x509.Certificate {
	t.Helper()
	str, ok := s.(string)
	require.True(t, ok, "a PEM string")
	b, _ := pem.Decode([]byte(str))
	require.NotNil(t, b)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

// TestCommands runs every command's happy path as an administrator, by
// GET and by POST, and checks what each answer holds.
func TestCommands(t *testing.T) {
	e := newEnv(t)
	admin := e.admin(t)
	c := e.client(&admin)

	t.Run("listCAProviders", func(t *testing.T) {
		status, body := e.call(t, c, "listCAProviders", nil)
		require.Equal(t, http.StatusOK, status, body)
		assert.EqualValues(t, 1, body["count"])
		p := body["caprovider"].([]any)[0].(map[string]any)
		assert.Equal(t, "root", p["name"])
		assert.NotEmpty(t, p["description"])
		status, body = e.call(t, c, "listCAProviders", url.Values{"name": {"other"}})
		require.Equal(t, http.StatusOK, status, body)
		assert.EqualValues(t, 0, body["count"])
	})
	t.Run("listCaCertificate", func(t *testing.T) {
		status, body := e.post(t, c, "listCaCertificate", `{"provider":"root"}`)
		require.Equal(t, http.StatusOK, status, body)
		assert.Equal(t, string(e.bundle), body["cacertificates"])
	})
	t.Run("issueCertificate with csr", func(t *testing.T) {
		status, body := e.post(t, c, "issueCertificate", `{"csr":`+jsonString(csrPEM(t, "kvm1"))+
			`,"domain":["kvm1.example.org","kvm1"],"ipaddress":"192.0.2.10","duration":2}`)
		require.Equal(t, http.StatusOK, status, body)
		cert := parseCert(t, body["certificate"])
		assert.Equal(t, []string{"kvm1.example.org", "kvm1"}, cert.DNSNames)
		require.Len(t, cert.IPAddresses, 1)
		assert.Equal(t, "192.0.2.10", cert.IPAddresses[0].String())
		assert.Equal(t, provider.FormatSerial(cert.SerialNumber), body["serial"])
		assert.Equal(t, string(e.bundle), body["cacertificates"])
		assert.NotContains(t, body, "privatekey")
		assert.Equal(t, provider.RoleHost, provider.RoleOf(cert))
		assert.WithinDuration(t, time.Now().Add(48*time.Hour), cert.NotAfter, time.Hour)
	})
	t.Run("issueCertificate without csr", func(t *testing.T) {
		status, body := e.call(t, c, "issueCertificate", url.Values{"domain": {"kvm2"}, "DURATION": {"1"}})
		require.Equal(t, http.StatusOK, status, body)
		cert := parseCert(t, body["certificate"])
		assert.Equal(t, "kvm2", cert.Subject.CommonName)
		_, err := tls.X509KeyPair([]byte(body["certificate"].(string)), []byte(body["privatekey"].(string)))
		assert.NoError(t, err, "the private key matches the certificate")
	})
	t.Run("revokeCertificate", func(t *testing.T) {
		victim := e.issue(t, provider.RoleHost, "kvm3", "kvm3")
		serial := provider.FormatSerial(victim.Leaf.SerialNumber)
		status, body := e.call(t, c, "revokeCertificate", url.Values{"serial": {strings.ToUpper(serial)}, "cn": {"kvm3"}})
		require.Equal(t, http.StatusOK, status, body)
		assert.Equal(t, true, body["success"])
		assert.Equal(t, serial, body["serial"])
		assert.ErrorIs(t, e.m.VerifyClientCertificate(context.Background(), []*x509.Certificate{victim.Leaf}), ca.ErrRevoked)
	})
	t.Run("listHosts", func(t *testing.T) {
		status, body := e.call(t, c, "listHosts", nil)
		require.Equal(t, http.StatusOK, status, body)
		assert.EqualValues(t, 0, body["count"])
		assert.Equal(t, []any{}, body["host"])
	})
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '\n':
			b.WriteString(`\n`)
		case '"':
			b.WriteString(`\"`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TestAuthentication: only an administrator's certificate (client role
// only) runs a command; an agent's host certificate and a management
// server's are 403, no certificate 401; a certificate of another CA, a
// server-only one and a revoked administrator's are refused at the
// handshake. No case is ever 200.
func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t)
	admin := e.admin(t)
	revoked := e.admin(t)
	require.NoError(t, e.m.Revoke(context.Background(), &ca.RevokeRequest{Certificate: revoked.Leaf}))
	agentCert := e.issue(t, provider.RoleHost, "kvm1", "kvm1")
	serverCert := e.issue(t, provider.RoleServer, "web", "web")
	foreignAdmin := other.admin(t)
	// A console proxy's certificate: client role only, from this CA
	// (QEMU's VNC server must trust it), but not made by admin-cert.
	proxyCert := e.issue(t, provider.RoleClient, "console-proxy")

	tests := []struct {
		name      string
		cert      *tls.Certificate
		status    int // 0: the handshake fails
		wantError string
	}{
		{name: "administrator", cert: &admin, status: http.StatusOK},
		{name: "no certificate", cert: nil, status: http.StatusUnauthorized, wantError: "client certificate is required"},
		{name: "agent host certificate", cert: &agentCert, status: http.StatusForbidden, wantError: "not an administrator"},
		{name: "console proxy client certificate", cert: &proxyCert, status: http.StatusForbidden, wantError: "not an administrator"},
		{name: "server-only certificate", cert: &serverCert},
		{name: "revoked administrator", cert: &revoked},
		{name: "administrator of another CA", cert: &foreignAdmin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.client(tc.cert).Get(e.apiURL + "/listCAProviders")
			if tc.status == 0 {
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					t.Fatalf("admitted with status %d: %s", resp.StatusCode, b)
				}
				assert.ErrorContains(t, err, "tls")
				return
			}
			require.NoError(t, err)
			status, body := decodeResponse(t, resp)
			assert.Equal(t, tc.status, status, body)
			if tc.wantError != "" {
				assert.EqualValues(t, tc.status, body["errorcode"])
				assert.Contains(t, body["errortext"], tc.wantError)
			}
		})
	}

	t.Run("management server certificate", func(t *testing.T) {
		// The management server's own certificate (host role, with the
		// marker name) is no administrator's either.
		assert.False(t, isAdministrator(e.id.Certificate()))
		assert.False(t, isAdministrator(agentCert.Leaf))
		assert.True(t, isAdministrator(admin.Leaf))
		assert.False(t, isAdministrator(proxyCert.Leaf))
	})
}

// TestClientErrors: every client mistake is a JSON error with its 4xx
// status, never a 5xx.
func TestClientErrors(t *testing.T) {
	e := newEnv(t)
	admin := e.admin(t)
	c := e.client(&admin)
	revokedTwice := e.issue(t, provider.RoleHost, "kvm9", "kvm9")
	require.NoError(t, e.m.Revoke(context.Background(), &ca.RevokeRequest{Certificate: revokedTwice.Leaf}))
	named := e.issue(t, provider.RoleHost, "kvm8", "kvm8")
	unknownSerial := provider.FormatSerial(big.NewInt(0x1234567))

	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		text        string
	}{
		{"unknown command", "GET", "/noSuchCommand", "", "", 404, "unknown command"},
		{"root path", "GET", "/", "", "", 404, "unknown command"},
		{"wrong method", "PUT", "/listCAProviders", "", "", 405, "GET or POST"},
		{"unknown parameter", "GET", "/listCaCertificate?foo=1", "", "", 400, `unknown parameter "foo"`},
		{"parameter twice", "GET", "/revokeCertificate?serial=1&SERIAL=2", "", "", 400, "given twice"},
		{"parameter twice in query and body", "POST", "/revokeCertificate?serial=1", "application/json", `{"serial":"2"}`, 400, "given twice"},
		{"duplicate JSON key", "POST", "/revokeCertificate", "application/json", `{"serial":"1","Serial":"2"}`, 400, "given twice"},
		{"malformed query", "GET", "/listCaCertificate?a=%zz", "", "", 400, "malformed query"},
		{"malformed JSON", "POST", "/issueCertificate", "application/json", `{"csr":`, 400, "malformed JSON"},
		{"JSON not an object", "POST", "/issueCertificate", "application/json", `["csr"]`, 400, "must be an object"},
		{"trailing JSON", "POST", "/issueCertificate", "application/json", `{"domain":"a"} {}`, 400, "trailing data"},
		{"JSON number for a string", "POST", "/revokeCertificate", "application/json", `{"serial":12}`, 400, "must be a string"},
		{"JSON null", "POST", "/revokeCertificate", "application/json", `{"serial":null}`, 400, "is null"},
		{"JSON array for serial", "POST", "/revokeCertificate", "application/json", `{"serial":["1"]}`, 400, "must be a string"},
		{"form body", "POST", "/revokeCertificate", "application/x-www-form-urlencoded", `serial=1`, 415, "JSON object"},
		{"body too large", "POST", "/issueCertificate", "application/json", `{"csr":"` + strings.Repeat("a", maxBody) + `"}`, 413, "over"},
		{"unknown provider", "GET", "/listCaCertificate?provider=acme", "", "", 400, "unknown provider"},
		{"issue without csr or domain", "GET", "/issueCertificate", "", "", 400, "needs a csr or a domain"},
		{"issue bad ipaddress", "GET", "/issueCertificate?domain=a&ipaddress=300.1.1.1", "", "", 400, "not an IP address"},
		{"issue bad duration", "GET", "/issueCertificate?domain=a&duration=soon", "", "", 400, "duration"},
		{"issue zero duration", "GET", "/issueCertificate?domain=a&duration=0", "", "", 400, "duration"},
		{"issue huge duration", "GET", "/issueCertificate?domain=a&duration=99999999999999", "", "", 400, "duration"},
		{"issue duration over the maximum", "GET", "/issueCertificate?domain=a&duration=400", "", "", 400, "invalid request"},
		{"issue bad csr", "POST", "/issueCertificate", "application/json", `{"csr":"not a csr"}`, 400, "invalid request"},
		{"issue management marker", "GET", "/issueCertificate?domain=cloudstack.internal", "", "", 400, "management marker"},
		{"revoke without serial", "GET", "/revokeCertificate", "", "", 400, "serial is required"},
		{"revoke bad serial", "GET", "/revokeCertificate?serial=xyz", "", "", 400, "hexadecimal"},
		{"revoke unknown serial", "GET", "/revokeCertificate?serial=" + unknownSerial, "", "", 404, "not found"},
		{"revoke unknown serial with cn", "GET", "/revokeCertificate?cn=a&serial=" + unknownSerial, "", "", 404, "not found"},
		{"revoke twice", "GET", "/revokeCertificate?serial=" + provider.FormatSerial(revokedTwice.Leaf.SerialNumber), "", "", 409, "already revoked"},
		{"revoke cn mismatch", "GET", "/revokeCertificate?cn=other&serial=" + provider.FormatSerial(named.Leaf.SerialNumber), "", "", 400, "does not match"},
		{"provision without hostid", "GET", "/provisionCertificate", "", "", 400, "hostid is required"},
		{"provision host not connected", "GET", "/provisionCertificate?hostid=kvm404", "", "", 404, "not connected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, e.apiURL+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := c.Do(req)
			require.NoError(t, err)
			status, body := decodeResponse(t, resp)
			assert.Equal(t, tc.status, status, body)
			assert.EqualValues(t, tc.status, body["errorcode"])
			assert.Contains(t, body["errortext"], tc.text)
			assert.Len(t, body, 2, "only errorcode and errortext")
		})
	}
	// The certificate revoked by "revoke cn mismatch" was not revoked.
	assert.NoError(t, e.m.VerifyClientCertificate(context.Background(), []*x509.Certificate{named.Leaf}))
}

// TestPublicEndpoints: the CRL, OCSP and the CA bundle need no client
// certificate, and report a serial revoked through the API.
func TestPublicEndpoints(t *testing.T) {
	e := newEnv(t)
	admin := e.admin(t)
	victim := e.issue(t, provider.RoleHost, "kvm1", "kvm1")
	status, body := e.call(t, e.client(&admin), "revokeCertificate", url.Values{"serial": {provider.FormatSerial(victim.Leaf.SerialNumber)}})
	require.Equal(t, http.StatusOK, status, body)
	anon := e.client(nil)

	resp, err := anon.Get(e.apiURL + "/crl")
	require.NoError(t, err)
	der, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	caCert := e.root.Certificate()
	require.NoError(t, crl.CheckSignatureFrom(caCert))
	found := false
	for _, r := range crl.RevokedCertificateEntries {
		found = found || r.SerialNumber.Cmp(victim.Leaf.SerialNumber) == 0
	}
	assert.True(t, found, "the CRL lists the revoked serial")

	req, err := ocsp.CreateRequest(victim.Leaf, caCert, nil)
	require.NoError(t, err)
	resp, err = anon.Post(e.apiURL+"/ocsp", "application/ocsp-request", strings.NewReader(string(req)))
	require.NoError(t, err)
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	o, err := ocsp.ParseResponseForCert(raw, victim.Leaf, caCert)
	require.NoError(t, err)
	assert.Equal(t, ocsp.Revoked, o.Status)

	resp, err = anon.Get(e.apiURL + "/ca.pem")
	require.NoError(t, err)
	pemBytes, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, string(e.bundle), string(pemBytes))
}

// TestRevokedAdminOnOpenConnection: a keep-alive connection opened with
// an administrator's certificate is judged again at every request, so a
// revocation shuts it out at once (403), not at its next handshake.
func TestRevokedAdminOnOpenConnection(t *testing.T) {
	e := newEnv(t)
	admin := e.admin(t)
	c := e.client(&admin)
	c.Transport.(*http.Transport).DisableKeepAlives = false
	get := func() (int, map[string]any, bool) {
		var reused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
		})
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.apiURL+"/listCAProviders", nil)
		require.NoError(t, err)
		resp, err := c.Do(req)
		require.NoError(t, err)
		status, body := decodeResponse(t, resp)
		return status, body, reused
	}
	status, body, _ := get()
	require.Equal(t, http.StatusOK, status, body)
	require.NoError(t, e.m.Revoke(context.Background(), &ca.RevokeRequest{Certificate: admin.Leaf}))
	status, body, reused := get()
	require.True(t, reused, "the second request went over the first connection")
	assert.Equal(t, http.StatusForbidden, status, body)
	assert.Contains(t, body["errortext"], "revoked")
}
