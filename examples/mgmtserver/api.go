package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvmpki/kvmpki/ca"
	"github.com/kvmpki/kvmpki/provider"
)

// api serves the commands. Construct it with newAPI.
type api struct {
	m      *ca.Manager
	prov   provider.Provider // the built-in CA, for inventory look-ups
	agents *agents
	log    *slog.Logger
	cmds   map[string]*command
}

// command is one API command: its allowed parameters and its body.
type command struct {
	name   string
	params []string
	run    func(ctx context.Context, p map[string]string) (any, error)
	allow  map[string]bool
}

func newAPI(m *ca.Manager, prov provider.Provider, as *agents, log *slog.Logger) *api {
	a := &api{m: m, prov: prov, agents: as, log: log, cmds: make(map[string]*command)}
	for _, c := range []*command{
		{name: "listCAProviders", params: []string{"name"}, run: a.listCAProviders},
		{name: "listCaCertificate", params: []string{"provider"}, run: a.listCaCertificate},
		{name: "issueCertificate", params: []string{"csr", "domain", "ipaddress", "duration", "provider"}, run: a.issueCertificate},
		{name: "revokeCertificate", params: []string{"serial", "cn", "provider"}, run: a.revokeCertificate},
		{name: "provisionCertificate", params: []string{"hostid", "provider"}, run: a.provisionCertificate},
		{name: "listHosts", params: []string{"hostid"}, run: a.listHosts},
	} {
		c.allow = make(map[string]bool)
		for _, p := range c.params {
			c.allow[p] = true
		}
		a.cmds[strings.ToLower(c.name)] = c
	}
	return a
}

// handler returns the API listener's handler: the public revocation and
// CA endpoints, and every other path as a command.
func (a *api) handler() (http.Handler, error) {
	ocsp, err := a.m.OCSPHandler(nil) // rootca signs OCSP itself
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/ca.pem", a.m.CABundleHandler())
	mux.Handle("/crl", a.m.CRLHandler())
	mux.Handle("/ocsp", ocsp)
	mux.Handle("/ocsp/", ocsp)
	mux.Handle("/", a)
	return mux, nil
}

// tlsConfig is the API listener's TLS configuration: id's certificate,
// and client certificates requested but not required (the public
// endpoints need none); a presented chain is verified at every
// handshake, resumed ones included.
func (a *api) tlsConfig(id *ca.Identity) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: id.GetCertificate,
		ClientAuth:     tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
			defer cancel()
			if err := a.m.VerifyClientCertificate(ctx, cs.PeerCertificates); err != nil {
				a.log.Warn("API client certificate refused", "subject", cs.PeerCertificates[0].Subject.String(),
					"serial", provider.FormatSerial(cs.PeerCertificates[0].SerialNumber), "err", err)
				return err
			}
			return nil
		},
	}
}

// isAdministrator reports whether c is an administrator's certificate, as
// admin-cert makes them: the client role only (its extended key usage
// exactly clientAuth) and the DNS name adminMarker. Agents and management
// servers hold host certificates (serverAuth too), which never call the
// API; a console proxy's or a libvirt client's certificate has the client
// role but not the marker.
func isAdministrator(c *x509.Certificate) bool {
	return len(c.ExtKeyUsage) == 1 && c.ExtKeyUsage[0] == x509.ExtKeyUsageClientAuth && len(c.UnknownExtKeyUsage) == 0 &&
		slices.Contains(c.DNSNames, adminMarker)
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			a.log.Error("API handler panicked", "path", r.URL.Path, "panic", v)
			writeError(w, &apiError{Status: http.StatusInternalServerError, Text: "internal error"})
		}
	}()
	if e := a.authenticate(r); e != nil {
		writeError(w, e)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	c := a.cmds[strings.ToLower(name)]
	if c == nil {
		writeError(w, &apiError{Status: http.StatusNotFound, Text: "unknown command " + strconv.Quote(truncate(name))})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Text: "use GET or POST"})
		return
	}
	p, e := readParams(w, r, c.allow)
	if e != nil {
		writeError(w, e)
		return
	}
	if v, ok := p["provider"]; ok && !strings.EqualFold(v, a.m.ProviderName()) {
		writeError(w, badRequest("unknown provider %q (this server's is %q)", truncate(v), a.m.ProviderName()))
		return
	}
	out, err := c.run(r.Context(), p)
	if err != nil {
		e := a.toAPIError(err)
		a.log.Info("API command failed", "command", c.name, "admin", r.TLS.PeerCertificates[0].Subject.CommonName,
			"status", e.Status, "err", err)
		writeError(w, e)
		return
	}
	a.log.Info("API command", "command", c.name, "admin", r.TLS.PeerCertificates[0].Subject.CommonName)
	writeJSON(w, http.StatusOK, out)
}

// authenticate requires an administrator's client certificate, valid now
// (a keep-alive connection outliving a revocation is judged again).
func (a *api) authenticate(r *http.Request) *apiError {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return &apiError{Status: http.StatusUnauthorized, Text: "an administrator client certificate is required"}
	}
	leaf := r.TLS.PeerCertificates[0]
	ctx, cancel := context.WithTimeout(r.Context(), verifyTimeout)
	defer cancel()
	if err := a.m.VerifyClientCertificate(ctx, r.TLS.PeerCertificates); err != nil {
		return &apiError{Status: http.StatusForbidden, Text: "client certificate refused: " + err.Error()}
	}
	if !isAdministrator(leaf) {
		return &apiError{Status: http.StatusForbidden, Text: "not an administrator's certificate (client role only)"}
	}
	return nil
}

// toAPIError maps an error onto its HTTP status: client mistakes and the
// package sentinels for them to 4xx, anything else to 500 with a generic
// text (the cause is logged).
func (a *api) toAPIError(err error) *apiError {
	var ae *apiError
	var pe *ca.ProvisionError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, errHostNotConnected):
		return &apiError{Status: http.StatusNotFound, Text: err.Error()}
	case errors.Is(err, ca.ErrProvisionBusy):
		return &apiError{Status: http.StatusConflict, Text: err.Error()}
	case errors.As(err, &pe) && pe.Step != ca.StepIssue:
		// The agent failed or went away: a fault beyond this server.
		return &apiError{Status: http.StatusBadGateway, Text: err.Error()}
	case errors.Is(err, errors.ErrUnsupported):
		return &apiError{Status: http.StatusNotImplemented, Text: err.Error()}
	case errors.Is(err, ca.ErrInvalidRequest), errors.Is(err, ca.ErrManagementName):
		return &apiError{Status: http.StatusBadRequest, Text: err.Error()}
	case errors.Is(err, ca.ErrNotFound):
		return &apiError{Status: http.StatusNotFound, Text: err.Error()}
	case errors.Is(err, provider.ErrAlreadyRevoked):
		return &apiError{Status: http.StatusConflict, Text: err.Error()}
	case errors.Is(err, provider.ErrRetryLater), errors.Is(err, ca.ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{Status: http.StatusServiceUnavailable, Text: err.Error()}
	}
	return &apiError{Status: http.StatusInternalServerError, Text: "internal error"}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(v)
}

// errorBody is the JSON of every error.
type errorBody struct {
	ErrorCode int    `json:"errorcode"`
	ErrorText string `json:"errortext"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, errorBody{ErrorCode: e.Status, ErrorText: e.Text})
}

// The answers.

type caProvider struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type listCAProvidersResponse struct {
	Count       int          `json:"count"`
	CAProviders []caProvider `json:"caprovider"`
}

func (a *api) listCAProviders(ctx context.Context, p map[string]string) (any, error) {
	infos, err := a.m.Providers(ctx)
	if err != nil {
		return nil, err
	}
	out := listCAProvidersResponse{CAProviders: []caProvider{}}
	for _, i := range infos {
		if name, ok := p["name"]; ok && !strings.EqualFold(name, i.Name) {
			continue
		}
		out.CAProviders = append(out.CAProviders, caProvider{Name: i.Name, Description: i.Description})
	}
	out.Count = len(out.CAProviders)
	return out, nil
}

type caCertificateResponse struct {
	CACertificates string `json:"cacertificates"`
}

func (a *api) listCaCertificate(ctx context.Context, _ map[string]string) (any, error) {
	b, err := a.m.CABundle(ctx)
	if err != nil {
		return nil, err
	}
	return caCertificateResponse{CACertificates: string(b)}, nil
}

type certificateResponse struct {
	Certificate    string    `json:"certificate"`
	CACertificates string    `json:"cacertificates"`
	PrivateKey     string    `json:"privatekey,omitempty"`
	Serial         string    `json:"serial"`
	NotAfter       time.Time `json:"notafter"`
}

// splitCSV splits a comma-separated list, dropping empty entries.
func splitCSV(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (a *api) issueCertificate(ctx context.Context, p map[string]string) (any, error) {
	req := &ca.IssueRequest{Role: provider.RoleHost, DNSNames: splitCSV(p["domain"])}
	if csr := p["csr"]; csr != "" {
		req.CSR = []byte(csr)
	}
	for _, s := range splitCSV(p["ipaddress"]) {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, badRequest("ipaddress: %q is not an IP address", truncate(s))
		}
		req.IPAddresses = append(req.IPAddresses, ip)
	}
	if d, ok := p["duration"]; ok {
		days, err := strconv.Atoi(strings.TrimSpace(d))
		if err != nil || days <= 0 || days > maxDurationDays {
			return nil, badRequest("duration must be a number of days between 1 and %d", maxDurationDays)
		}
		req.Validity = time.Duration(days) * 24 * time.Hour
	}
	if req.CSR == nil && len(req.DNSNames) == 0 {
		return nil, badRequest("issueCertificate needs a csr or a domain")
	}
	res, err := a.m.Issue(ctx, req)
	if err != nil {
		return nil, err
	}
	bundle, err := a.m.CABundle(ctx)
	if err != nil {
		return nil, err
	}
	out := certificateResponse{
		Certificate:    string(provider.EncodeCertificates(res.Certificate)),
		CACertificates: string(bundle),
		Serial:         provider.FormatSerial(res.Certificate.SerialNumber),
		NotAfter:       res.Certificate.NotAfter.UTC(),
	}
	if res.PrivateKey != nil {
		key, err := res.KeyPEM()
		if err != nil {
			return nil, err
		}
		out.PrivateKey = string(key)
		clear(key)
	}
	return out, nil
}

type revokeResponse struct {
	Success bool   `json:"success"`
	Serial  string `json:"serial"`
}

func (a *api) revokeCertificate(ctx context.Context, p map[string]string) (any, error) {
	s, ok := p["serial"]
	if !ok || s == "" {
		return nil, badRequest("serial is required")
	}
	serial, err := ca.ParseSerial(s)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	req := &ca.RevokeRequest{Serial: provider.FormatSerial(serial)}
	if cn, ok := p["cn"]; ok {
		cert, err := a.lookup(ctx, serial)
		if err != nil {
			return nil, err
		}
		if cert.Subject.CommonName != cn {
			return nil, badRequest("cn %q does not match the certificate of serial %s", truncate(cn), req.Serial)
		}
		req.Certificate = cert
	}
	if err := a.m.Revoke(ctx, req); err != nil {
		return nil, err
	}
	a.log.Info("certificate revoked", "serial", req.Serial)
	return revokeResponse{Success: true, Serial: req.Serial}, nil
}

// lookup returns the certificate of serial from the CA's inventory.
func (a *api) lookup(ctx context.Context, serial *big.Int) (*x509.Certificate, error) {
	rec, err := provider.LookupCertificate(ctx, a.prov, serial)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(rec.Raw)
}

type provisionResponse struct {
	HostID string `json:"hostid"`
	Serial string `json:"serial"`
}

func (a *api) provisionCertificate(ctx context.Context, p map[string]string) (any, error) {
	id := p["hostid"]
	if id == "" {
		return nil, badRequest("hostid is required")
	}
	ag := a.agents.get(id)
	if ag == nil {
		return nil, errHostNotConnected
	}
	cert, err := a.agents.provision(ctx, ag)
	if err != nil {
		return nil, err
	}
	return provisionResponse{HostID: id, Serial: provider.FormatSerial(cert.SerialNumber)}, nil
}

type host struct {
	HostID        string    `json:"hostid"`
	Serial        string    `json:"serial"`
	RemoteAddress string    `json:"remoteaddress"`
	Since         time.Time `json:"since"`
	NotAfter      time.Time `json:"notafter"`
}

type listHostsResponse struct {
	Count int    `json:"count"`
	Hosts []host `json:"host"`
}

func (a *api) listHosts(_ context.Context, p map[string]string) (any, error) {
	out := listHostsResponse{Hosts: []host{}}
	for _, ag := range a.agents.list() {
		if id, ok := p["hostid"]; ok && id != ag.hostID {
			continue
		}
		out.Hosts = append(out.Hosts, host{
			HostID: ag.hostID, Serial: ag.serial(), RemoteAddress: ag.remote.String(),
			Since: ag.since.UTC(), NotAfter: ag.cert.NotAfter.UTC(),
		})
	}
	out.Count = len(out.Hosts)
	return out, nil
}
