package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// Host is a KVM host (or system VM) as the management server reaches it
// to provision credentials: CloudStack's SetupKeyStoreCommand,
// SetupCertificateCommand and the service restart that follows, as three
// calls. The keystore package implements the host-side halves; a
// transport carries them: over SSH ([SSHHost]) or over the platform's own
// agent channel (an implementation the platform writes).
//
// A Host must keep the host's previous credentials in place when a step
// fails: a host whose setup or install fails keeps working with what it
// had.
type Host interface {
	// SetupKeystore makes sure the host has a key and keystore
	// (generating them when it has none) and returns a PKCS #10 request
	// for its key, PEM.
	SetupKeystore(ctx context.Context, req *KeystoreSetup) (csrPEM []byte, err error)
	// InstallCertificate installs the host's certificate and the CA
	// bundle next to its key, atomically.
	InstallCertificate(ctx context.Context, c *CertificateInstall) error
	// Reload makes the host's services use the new credentials without
	// restarting anything that runs guests.
	Reload(ctx context.Context) error
}

// KeystoreSetup is what [Host.SetupKeystore] is asked for.
type KeystoreSetup struct {
	// DNSNames and IPAddresses are the names the request should carry,
	// as the platform knows the host.
	DNSNames    []string
	IPAddresses []net.IP
	// KeyAlgorithm and KeySize choose a key the host generates; zero
	// values leave the choice to the host (keystore: ECDSA P-256).
	KeyAlgorithm provider.KeyAlgorithm
	KeySize      int
}

// CertificateInstall is what [Host.InstallCertificate] installs.
type CertificateInstall struct {
	// CertificatePEM is the host's certificate followed by the issuing
	// CA certificates up to, not including, the root.
	CertificatePEM []byte
	// CABundlePEM holds every certificate the host must trust: all of
	// the provider's CA certificates (two roots during a CA rotation).
	CABundlePEM []byte
	// Serial is the new certificate's serial, for the host's logs.
	Serial string
}

// ProvisionRequest asks [Manager.Provision] to provision one host.
type ProvisionRequest struct {
	// Name identifies the host in errors, logs and alerts (CloudStack's
	// host name). Required.
	Name string
	// Host reaches the host. Required.
	Host Host
	// DNSNames and IPAddresses are the host's names as the platform
	// knows them; they go into the CSR request and are added to the
	// certificate as [Manager.Issue] adds them (CloudStack adds the
	// host's addresses to its agent's CSR).
	DNSNames    []string
	IPAddresses []net.IP
	// Validity as in IssueRequest: zero means Settings.Validity.
	Validity time.Duration
}

// ProvisionResult is a provisioned host's new certificate.
type ProvisionResult struct {
	// Certificate is the certificate the host now uses.
	Certificate *x509.Certificate
	// Reloaded is false when the certificate was installed but the
	// host's services could not be told (the error says why): the host
	// holds the new credentials and uses them after its next restart.
	Reloaded bool
}

// ProvisionStep names a step of provisioning, for [*ProvisionError].
type ProvisionStep string

// The steps of provisioning, in order.
const (
	StepSetup   ProvisionStep = "keystore setup"
	StepIssue   ProvisionStep = "issue"
	StepInstall ProvisionStep = "certificate install"
	StepReload  ProvisionStep = "reload"
)

// ProvisionError says which step of provisioning a host failed. It
// unwraps to the step's error.
type ProvisionError struct {
	Host string
	Step ProvisionStep
	Err  error
}

func (e *ProvisionError) Error() string {
	return fmt.Sprintf("ca: provisioning %s: %s: %v", e.Host, e.Step, e.Err)
}

func (e *ProvisionError) Unwrap() error { return e.Err }

// Provision runs CloudStack's provisioning flow for one host: the host
// sets up its keystore and sends a CSR; the provider issues a host
// certificate for it with the host's names added; the host installs the
// certificate and the CA bundle; the host reloads its services. A failure
// is a *[ProvisionError] naming the host and the step. When only the
// reload fails, the result is returned with Reloaded false together with
// the error, since the host holds the new certificate.
//
// The CSR is checked as every agent request is: one asking for the
// management marker name is refused.
//
// A host is provisioned by one call at a time: a call for a Name that
// another call of this Manager is provisioning fails at once with an
// error matching ErrProvisionBusy (two setups in turn would replace the
// key the first certificate was issued for).
func (m *Manager) Provision(ctx context.Context, req *ProvisionRequest) (*ProvisionResult, error) {
	if req == nil || req.Host == nil || req.Name == "" {
		return nil, &provider.RequestError{Field: "host", Reason: "Provision needs a Name and a Host"}
	}
	if _, busy := m.provisioning.LoadOrStore(req.Name, struct{}{}); busy {
		return nil, fmt.Errorf("ca: provisioning %s: %w", req.Name, ErrProvisionBusy)
	}
	defer m.provisioning.Delete(req.Name)
	fail := func(step ProvisionStep, err error) error {
		m.s.logger.Warn("ca: provisioning failed", "host", req.Name, "step", string(step), "error", err)
		return &ProvisionError{Host: req.Name, Step: step, Err: err}
	}
	csr, err := req.Host.SetupKeystore(ctx, &KeystoreSetup{
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPAddresses,
		KeyAlgorithm: m.s.keyAlg,
		KeySize:      m.s.keySize,
	})
	if err != nil {
		return nil, fail(StepSetup, err)
	}
	if len(csr) == 0 {
		return nil, fail(StepSetup, errors.New("the host returned no CSR"))
	}
	res, err := m.Issue(ctx, &IssueRequest{
		CSR:         csr,
		DNSNames:    req.DNSNames,
		IPAddresses: req.IPAddresses,
		Validity:    req.Validity,
		Role:        provider.RoleHost,
	})
	if err != nil {
		return nil, fail(StepIssue, err)
	}
	bundle, err := m.CABundle(ctx)
	if err != nil {
		return nil, fail(StepIssue, err)
	}
	install := &CertificateInstall{
		CertificatePEM: provider.EncodeCertificates(append([]*x509.Certificate{res.Certificate}, intermediates(res.Chain)...)...),
		CABundlePEM:    bundle,
		Serial:         provider.FormatSerial(res.Certificate.SerialNumber),
	}
	if err := req.Host.InstallCertificate(ctx, install); err != nil {
		return nil, fail(StepInstall, err)
	}
	out := &ProvisionResult{Certificate: res.Certificate}
	if err := req.Host.Reload(ctx); err != nil {
		return out, fail(StepReload, err)
	}
	out.Reloaded = true
	m.s.logger.Info("ca: host provisioned", "host", req.Name, "serial", install.Serial, "not_after", res.Certificate.NotAfter)
	return out, nil
}

// intermediates drops a trailing self-signed root from an issuing chain:
// a peer must get its trust anchor from the CA bundle, never from the
// chain it is shown.
func intermediates(chain []*x509.Certificate) []*x509.Certificate {
	if n := len(chain); n > 0 {
		last := chain[n-1]
		if last.CheckSignatureFrom(last) == nil && string(last.RawIssuer) == string(last.RawSubject) {
			return chain[:n-1]
		}
	}
	return chain
}
