package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/kvmpki/kvmpki/internal/ocspx"
	"github.com/kvmpki/kvmpki/provider"
)

// CABundleHandler serves the current provider's CA certificates as PEM
// (application/x-pem-file), with an ETag so that a conditional GET gets
// 304 Not Modified.
func (m *Manager) CABundleHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !getOrHead(w, r) {
			return
		}
		var st *caState
		err := m.with(func(h *handle) error {
			var err error
			st, err = h.caCerts(r.Context(), false)
			return err
		})
		if err != nil {
			m.httpError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("ETag", etagOf(st.pem))
		w.Header().Set("Cache-Control", "public, max-age=300")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(st.pem))
	})
}

// CRLHandler serves the current provider's CRL: DER
// (application/pkix-crl) by default, PEM (application/x-pem-file) for
// "?format=pem" or an Accept header naming application/x-pem-file, with
// Last-Modified (ThisUpdate), ETag, Expires and a Cache-Control max-age
// running to NextUpdate; a conditional GET gets 304. The CRL is signed
// when a revocation goes through the Manager or when half its lifetime
// has passed, never per request. A provider that neither signs nor
// fetches CRLs gets 501.
func (m *Manager) CRLHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !getOrHead(w, r) {
			return
		}
		var st *crlState
		err := m.with(func(h *handle) error {
			var err error
			st, err = h.publisher().current(r.Context())
			return err
		})
		if err != nil {
			m.httpError(w, r, err)
			return
		}
		body, ctype, etag := st.der, "application/pkix-crl", st.etag
		if r.URL.Query().Get("format") == "pem" || strings.Contains(r.Header.Get("Accept"), "application/x-pem-file") {
			body, ctype, etag = st.pem, "application/x-pem-file", strings.TrimSuffix(st.etag, `"`)+`-pem"`
		}
		hd := w.Header()
		hd.Set("Content-Type", ctype)
		hd.Set("ETag", etag)
		hd.Add("Vary", "Accept")
		if !st.nextUpdate.IsZero() {
			maxAge := int(st.nextUpdate.Sub(m.s.now()) / time.Second)
			hd.Set("Cache-Control", "public, max-age="+strconv.Itoa(max(maxAge, 0)))
			hd.Set("Expires", st.nextUpdate.UTC().Format(http.TimeFormat))
		} else {
			hd.Set("Cache-Control", "no-cache")
		}
		http.ServeContent(w, r, "", st.thisUpdate, bytes.NewReader(body))
	})
}

func getOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return false
	}
	return true
}

func etagOf(b []byte) string {
	return `"` + strconv.FormatUint(fnv64(b), 16) + `"`
}

func fnv64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func (m *Manager) httpError(w http.ResponseWriter, r *http.Request, err error) {
	m.s.logger.Warn("ca: HTTP request failed", "path", r.URL.Path, "error", err)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		http.Error(w, "not supported by the CA provider", http.StatusNotImplemented)
	case errors.Is(err, provider.ErrRetryLater):
		w.Header().Set("Retry-After", "60")
		http.Error(w, "CA not ready", http.StatusServiceUnavailable)
	default:
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// OCSPResponder is a key that signs OCSP responses on the platform's
// side: the CA's own certificate and key, or a responder certificate the
// CA issued with the id-kp-OCSPSigning extended key usage (RFC 6960,
// section 4.2.2.2). It is the fallback for providers that cannot sign OCSP
// responses themselves ([provider.OCSPSigner]); rootca can, so a platform
// on rootca needs none and never handles the CA key.
type OCSPResponder struct {
	// Certificate is the responder's certificate. It must be the CA
	// certificate the statuses are about, or one that CA issued.
	Certificate *x509.Certificate
	// Signer is Certificate's private key.
	Signer crypto.Signer
}

type ocspEntry struct {
	der       []byte
	refreshAt time.Time
}

// OCSPHandler returns an RFC 6960 OCSP responder for the certificates of
// the CA whose certificate is the first of the current provider's CA
// certificates (and, when the provider signs, of the other CAs of its
// bundle it signs for: the previous CA during a rotation), answering GET (the base64 request in the path) and POST
// (application/ocsp-request). A serial the provider's inventory holds is
// "good" or "revoked" with its reason and time; one it never issued is
// "unknown" (a provider without an inventory answers from its CRL: "good"
// unless listed). Signed answers are cached per serial and CertID until a revocation
// or issuance through the Manager, or a revocation notice from the
// provider ([provider.RevocationNotifier]), changes that serial, or half
// of their one-hour validity has passed.
//
// Answers are signed by the provider when it is a [provider.OCSPSigner]
// (rootca is), and otherwise with fallback, which may then be nil only if
// the current provider signs: a provider set later that cannot sign, with
// no fallback, gets "unauthorized" answers (and a logged warning).
func (m *Manager) OCSPHandler(fallback *OCSPResponder) (http.Handler, error) {
	if fallback != nil && (fallback.Certificate == nil || fallback.Signer == nil) {
		return nil, errors.New("ca: OCSP responder needs a certificate and a signer")
	}
	if fallback == nil {
		err := m.with(func(h *handle) error {
			if _, ok := h.p.(provider.OCSPSigner); !ok {
				return fmt.Errorf("ca: provider %s cannot sign OCSP responses, and no OCSPResponder was given: %w", h.p.Name(), errors.ErrUnsupported)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		der, err := readOCSPRequest(r)
		if err != nil {
			m.writeOCSP(w, ocsp.MalformedRequestErrorResponse, http.StatusBadRequest)
			return
		}
		// The fast path: a request seen before (clients without a nonce
		// send the same bytes) whose serial's answer is still cached.
		if out := m.cachedOCSP(der); out != nil {
			m.writeOCSP(w, out, http.StatusOK)
			return
		}
		req, err := ocsp.ParseRequest(der)
		if err != nil {
			m.writeOCSP(w, ocsp.MalformedRequestErrorResponse, http.StatusOK)
			return
		}
		var out []byte
		err = m.with(func(h *handle) error {
			out, err = h.ocspAnswer(r.Context(), fallback, req, der)
			return err
		})
		switch {
		case errors.Is(err, errNotOurIssuer):
			m.writeOCSP(w, ocsp.UnauthorizedErrorResponse, http.StatusOK)
		case errors.Is(err, errNoOCSPSigner):
			m.s.logger.Warn("ca: OCSP answer refused", "error", err)
			m.writeOCSP(w, ocsp.UnauthorizedErrorResponse, http.StatusOK)
		case err != nil:
			m.s.logger.Warn("ca: OCSP answer failed", "error", err)
			m.writeOCSP(w, ocsp.InternalErrorErrorResponse, http.StatusOK)
		default:
			m.writeOCSP(w, out, http.StatusOK)
		}
	}), nil
}

var (
	errNotOurIssuer = errors.New("ca: OCSP request for another CA")
	errNoOCSPSigner = errors.New("ca: the provider cannot sign OCSP responses and no OCSPResponder was given")
)

func (m *Manager) writeOCSP(w http.ResponseWriter, body []byte, status int) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func readOCSPRequest(r *http.Request) ([]byte, error) {
	switch r.Method {
	case http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, maxOCSPRequest+1))
		if err != nil {
			return nil, err
		}
		if len(body) > maxOCSPRequest {
			return nil, errors.New("request too large")
		}
		return body, nil
	case http.MethodGet:
		raw := r.URL.EscapedPath()
		if len(raw) > 2*maxOCSPRequest {
			return nil, errors.New("request too large")
		}
		// The request is the path's tail, base64 (whose alphabet has '/')
		// and URL-escaped, after the handler's own prefix, which the
		// handler does not know: try the last segment first (clients that
		// escape '/'), then ever shorter tails.
		// At most maxOCSPGetTries tails, so that a path of slashes costs
		// little.
		cands := []int{strings.LastIndexByte(raw, '/')}
		for i := 0; i < len(raw) && len(cands) < maxOCSPGetTries; i++ {
			if raw[i] == '/' && i != cands[0] {
				cands = append(cands, i)
			}
		}
		for _, i := range cands {
			if der, ok := decodeOCSPGet(raw[i+1:]); ok {
				return der, nil
			}
		}
		return nil, errors.New("no OCSP request in the path")
	}
	return nil, errors.New("method not allowed")
}

// decodeOCSPGet decodes a GET request's path tail, and reports whether
// it holds an OCSP request.
func decodeOCSPGet(tail string) ([]byte, bool) {
	s, err := url.PathUnescape(tail)
	if err != nil || s == "" {
		return nil, false
	}
	// Some clients send the raw base64 with '+' turned into ' '.
	s = strings.ReplaceAll(s, " ", "+")
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, false
	}
	if _, err := ocsp.ParseRequest(der); err != nil {
		return nil, false
	}
	return der, true
}

// ocspAnswer returns the signed answer for req, from the cache when it is
// fresh.
func (h *handle) ocspAnswer(ctx context.Context, fallback *OCSPResponder, req *ocsp.Request, reqDER []byte) ([]byte, error) {
	if _, ok := h.p.(provider.OCSPSigner); !ok && fallback == nil {
		return nil, fmt.Errorf("%w (provider %s)", errNoOCSPSigner, h.p.Name())
	}
	st, err := h.caCerts(ctx, false)
	if err != nil {
		return nil, err
	}
	// The issuing CA; during a rotation also the previous one, when the
	// provider signs (a fallback responder speaks for the first CA only).
	_, signs := h.p.(provider.OCSPSigner)
	var issuer *x509.Certificate
	for i, c := range st.certs {
		if i > 0 && !signs {
			break
		}
		if matchesIssuer(req, c) {
			issuer = c
			break
		}
	}
	if issuer == nil {
		return nil, errNotOurIssuer
	}
	p := h.publisher()
	now := h.m.s.now()
	k := ocspKey{serial: req.SerialNumber.Text(16), certID: fmt.Sprintf("%d/%x", req.HashAlgorithm, req.IssuerKeyHash)}
	if der := p.cachedAnswer(k, now); der != nil {
		p.rememberRequest(reqDER, k)
		return der, nil
	}
	rev := p.rev.Load()
	tmpl, err := h.ocspStatus(ctx, req.SerialNumber)
	if err != nil {
		return nil, err
	}
	tmpl.Issuer, tmpl.IssuerHash = issuer, req.HashAlgorithm
	tmpl.ThisUpdate = now.Add(-time.Minute).Truncate(time.Second)
	tmpl.NextUpdate = now.Add(ocspValidity).Truncate(time.Second)
	der, err := h.signOCSP(ctx, fallback, tmpl)
	if errors.Is(err, provider.ErrInvalidRequest) && issuer != st.certs[0] {
		// A CA certificate of the bundle the provider does not sign
		// for, such as the root above an issuing intermediate.
		return nil, errNotOurIssuer
	}
	if err != nil {
		return nil, err
	}
	p.storeAnswer(k, der, now.Add(ocspValidity/2), rev)
	p.rememberRequest(reqDER, k)
	return der, nil
}

// signOCSP signs tmpl with the provider when it can, else with fallback.
func (h *handle) signOCSP(ctx context.Context, fallback *OCSPResponder, tmpl *provider.OCSPResponseTemplate) ([]byte, error) {
	der, err := provider.SignOCSPResponse(ctx, h.p, tmpl)
	switch {
	case err == nil:
		return der, nil
	case !errors.Is(err, errors.ErrUnsupported):
		return nil, fmt.Errorf("ca: sign OCSP response with %s: %w", h.p.Name(), err)
	case fallback == nil: // ocspAnswer checked; the provider changed its mind
		return nil, fmt.Errorf("%w (provider %s)", errNoOCSPSigner, h.p.Name())
	}
	der, err = ocspx.Sign(tmpl, fallback.Certificate, fallback.Signer, 0)
	if err != nil {
		return nil, fmt.Errorf("ca: sign OCSP response: %w", err)
	}
	return der, nil
}

// ocspStatus is the status of serial: from the inventory when the
// provider has one, else from its CRL.
func (h *handle) ocspStatus(ctx context.Context, serial *big.Int) (*provider.OCSPResponseTemplate, error) {
	tmpl := &provider.OCSPResponseTemplate{SerialNumber: serial, Status: provider.OCSPGood}
	rec, err := provider.LookupCertificate(ctx, h.p, serial)
	switch {
	case errors.Is(err, ErrNotFound):
		tmpl.Status = provider.OCSPUnknown
		return tmpl, nil
	case err == nil:
		if rec.Status == provider.StatusRevoked {
			tmpl.Status, tmpl.RevokedAt, tmpl.Reason = provider.OCSPRevoked, rec.RevokedAt.Truncate(time.Second), rec.Reason
		}
		return tmpl, nil
	case !errors.Is(err, errors.ErrUnsupported):
		return nil, err
	}
	st, err := h.publisher().current(ctx)
	if err != nil {
		return nil, err
	}
	if e, ok := st.lookup(serial); ok {
		tmpl.Status, tmpl.RevokedAt, tmpl.Reason = provider.OCSPRevoked, e.RevocationTime, provider.RevocationReason(e.ReasonCode)
	}
	return tmpl, nil
}

// matchesIssuer reports whether req asks about a certificate issued by
// issuer (name and key hashes under the request's hash).
func matchesIssuer(req *ocsp.Request, issuer *x509.Certificate) bool {
	if !req.HashAlgorithm.Available() {
		return false
	}
	nameHash := req.HashAlgorithm.New()
	nameHash.Write(issuer.RawSubject)
	pub, ok := subjectPublicKeyBits(issuer.RawSubjectPublicKeyInfo)
	if !ok {
		return false
	}
	keyHash := req.HashAlgorithm.New()
	keyHash.Write(pub)
	return bytes.Equal(nameHash.Sum(nil), req.IssuerNameHash) && bytes.Equal(keyHash.Sum(nil), req.IssuerKeyHash)
}

// cachedOCSP returns the cached answer to a request seen before, or nil.
func (m *Manager) cachedOCSP(reqDER []byte) []byte {
	h, err := m.acquire()
	if err != nil {
		return nil
	}
	defer m.release(h)
	p := h.publisher()
	now := m.s.now()
	p.ocspMu.Lock()
	k, ok := p.ocspReqs[string(reqDER)]
	p.ocspMu.Unlock()
	if !ok {
		return nil
	}
	return p.cachedAnswer(k, now)
}
