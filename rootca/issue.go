package rootca

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// Issue issues a certificate from a CSR or, without one, for a key it
// generates. See the package documentation for the names, key and
// validity policies. A refused request yields an error matching
// provider.ErrInvalidRequest and changes no state. The certificate is in
// the store when Issue returns.
func (ca *CA) Issue(ctx context.Context, req *provider.IssueRequest) (*provider.IssueResult, error) {
	if err := provider.CheckIssueRequest(req, ca.csrPolicy()); err != nil {
		return nil, err
	}
	names := newNameSet(ca.opts.maxNames())
	if err := ca.addRequestNames(names, req); err != nil {
		return nil, err
	}

	var (
		pub crypto.PublicKey
		key crypto.Signer
	)
	if req.CSR != nil {
		csr, err := ca.checkCSR(req.CSR)
		if err != nil {
			return nil, err
		}
		if err := ca.addCSRNames(names, csr); err != nil {
			return nil, err
		}
		pub = csr.PublicKey
	} else {
		var err error
		alg, size := req.KeyAlgorithm, req.KeySize
		if alg == provider.KeyAlgorithmDefault && size == 0 {
			alg, size = ca.opts.LeafKeyAlgorithm, ca.opts.LeafKeySize
		}
		key, err = generateKey(ca.opts.rand(), alg, size, defaultLeafKeyAlgorithm, defaultLeafKeySize)
		if err != nil {
			return nil, &provider.RequestError{Field: "key", Reason: err.Error()}
		}
		pub = key.Public()
	}
	cert, chain, err := ca.sign(ctx, pub, names, req.Role, req.Validity, req.MaxValidity)
	if err != nil {
		return nil, err
	}
	return &provider.IssueResult{
		Certificate: cert,
		Chain:       chain,
		PrivateKey:  key,
	}, nil
}

// addRequestNames adds the names the platform vouches for, which
// provider.CheckIssueRequest has checked.
func (ca *CA) addRequestNames(names *nameSet, req *provider.IssueRequest) error {
	if req.CommonName != "" {
		if err := names.addName("common name", req.CommonName); err != nil {
			return err
		}
		names.commonName = req.CommonName
	}
	for _, n := range req.DNSNames {
		if err := names.addDNS("dns", n); err != nil {
			return err
		}
	}
	for _, ip := range req.IPAddresses {
		if err := names.addIP("ip", ip); err != nil {
			return err
		}
	}
	return nil
}

// csrPolicy is the policy provider.CheckCSR and CheckIssueRequest apply
// for this CA.
func (ca *CA) csrPolicy() *provider.CSRPolicy {
	return &provider.CSRPolicy{MinRSAKeySize: keyPolicy.MinRSAKeySize, MaxRSAKeySize: keyPolicy.MaxRSAKeySize, MaxNames: ca.opts.maxNames()}
}

// checkCSR parses a CSR and applies the signature, key, extension and
// name policies of provider.CheckCSR.
func (ca *CA) checkCSR(data []byte) (*x509.CertificateRequest, error) {
	return provider.CheckCSR(data, ca.csrPolicy())
}

// addCSRNames adds the names the requester asks for. Every name must be
// well formed. By default only the names the request vouches for are kept
// (the others are left out); with Options.InsecureAllowCSRNames every name
// is kept unless it is reserved.
func (ca *CA) addCSRNames(names *nameSet, csr *x509.CertificateRequest) error {
	lax := ca.opts.InsecureAllowCSRNames
	// add reports whether the name ended up in the certificate.
	add := func(field, name string, ip net.IP) (bool, error) {
		key, err := names.key(field, name, ip)
		if err != nil {
			return false, err
		}
		if names.seen[key] {
			return true, nil
		}
		if !lax {
			return false, nil
		}
		if ip == nil {
			if reserved(key, ca.opts.ReservedDNSNames) {
				return false, &provider.RequestError{Field: "csr", Reason: fmt.Sprintf("name %q is reserved for the platform", key)}
			}
			return true, names.addName(field, name)
		}
		return true, names.addIP(field, ip)
	}
	if cn := csr.Subject.CommonName; cn != "" {
		kept, err := add("csr common name", cn, nil)
		if err != nil {
			return err
		}
		if kept && names.commonName == "" {
			names.commonName = cn
		}
	}
	for _, n := range csr.DNSNames {
		if _, err := add("csr dns", n, nil); err != nil {
			return err
		}
	}
	for _, ip := range csr.IPAddresses {
		if _, err := add("csr ip", "", ip); err != nil {
			return err
		}
	}
	return nil
}

// sign makes, signs and records a leaf certificate.
func (ca *CA) sign(ctx context.Context, pub crypto.PublicKey, names *nameSet, role provider.Role, validity, maxValidity time.Duration) (*x509.Certificate, []*x509.Certificate, error) {
	// The issuing generation, one for the whole call even if a rotation
	// replaces it meanwhile.
	g := ca.auth.Load().current
	if err := provider.CheckPublicKey(pub, ca.csrPolicy()); err != nil {
		return nil, nil, &provider.RequestError{Field: "key", Reason: err.Error()}
	}
	cn := names.commonName
	switch {
	case cn != "":
	case len(names.dnsNames) > 0:
		cn = names.dnsNames[0]
	case len(names.ips) > 0:
		cn = names.ips[0].String()
	default:
		return nil, nil, &provider.RequestError{Field: "names", Reason: "no common name, DNS name or IP address"}
	}
	if len(cn) > maxCommonNameLength {
		return nil, nil, &provider.RequestError{Field: "common name", Reason: fmt.Sprintf("%q is longer than %d characters", cn, maxCommonNameLength)}
	}

	if maxValidity < 0 {
		return nil, nil, &provider.RequestError{Field: "max validity", Reason: "negative"}
	}
	defaulted := validity == 0
	if defaulted {
		validity = min(ca.opts.defaultValidity(), ca.opts.maxValidity())
		if maxValidity > 0 {
			// The requester's upper bound (IssueRequest.MaxValidity).
			validity = min(validity, maxValidity)
		}
	}
	if validity < 0 {
		return nil, nil, &provider.RequestError{Field: "validity", Reason: "negative"}
	}
	if max := ca.opts.maxValidity(); validity > max {
		return nil, nil, &provider.RequestError{Field: "validity", Reason: fmt.Sprintf("%v exceeds the maximum of %v", validity, max)}
	}
	now := ca.opts.now().UTC().Truncate(time.Second)
	if !now.Before(g.cert.NotAfter) {
		return nil, nil, fmt.Errorf("rootca: CA certificate expired at %s", g.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(validity)
	if defaulted && notAfter.After(g.cert.NotAfter) {
		// The request named no validity: end with the CA rather than
		// refuse every request in the CA's last year.
		notAfter = g.cert.NotAfter
	}
	if notAfter.After(g.cert.NotAfter) {
		return nil, nil, &provider.RequestError{Field: "validity", Reason: fmt.Sprintf("certificate would outlive the CA (valid until %s)", g.cert.NotAfter.UTC().Format(time.RFC3339))}
	}
	if now.Before(g.cert.NotBefore) {
		return nil, nil, fmt.Errorf("rootca: CA certificate is not valid before %s", g.cert.NotBefore.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-ca.opts.backdate())
	if notBefore.Before(g.cert.NotBefore) {
		notBefore = g.cert.NotBefore
	}

	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, nil, &provider.RequestError{Field: "key", Reason: err.Error()}
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              leafKeyUsage(role, pub),
		ExtKeyUsage:           role.ExtKeyUsages(),
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		DNSNames:              names.dnsNames,
		IPAddresses:           names.ips,
		SignatureAlgorithm:    g.sigAlg,
	}

	for attempt := 1; ; attempt++ {
		if tmpl.SerialNumber, err = randomSerial(ca.opts.rand()); err != nil {
			return nil, nil, err
		}
		der, err := x509.CreateCertificate(ca.opts.rand(), tmpl, g.cert, pub, g.signer)
		if err != nil {
			return nil, nil, fmt.Errorf("rootca: sign certificate: %w", err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("rootca: parse issued certificate: %w", err)
		}
		rec := recordOf(cert, role)
		err = ca.store.AddCertificate(ctx, rec)
		if errors.Is(err, ErrDuplicateSerial) && attempt < maxIssueAttempts {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("rootca: record certificate: %w", err)
		}
		if l := ca.opts.Logger; l != nil && l.Enabled(ctx, slog.LevelInfo) {
			l.LogAttrs(ctx, slog.LevelInfo, "rootca: issued certificate",
				slog.String("serial", provider.FormatSerial(cert.SerialNumber)), slog.String("subject", rec.Subject),
				slog.String("role", role.String()), slog.Time("not_after", cert.NotAfter))
		}
		return cert, slices.Clone(g.chain), nil
	}
}

// leafKeyUsage returns the key usage for a leaf: digitalSignature and
// keyEncipherment for RSA server-capable leaves, because libvirt 9.0
// demands keyEncipherment whenever the extension is present (and Go marks
// it critical); no extension at all for ECDSA leaves (keyEncipherment is
// wrong for ECDSA, RFC 8813) and for client-only leaves (zlint refuses
// keyEncipherment next to clientAuth alone).
func leafKeyUsage(role provider.Role, pub crypto.PublicKey) x509.KeyUsage {
	if role == provider.RoleClient {
		return 0
	}
	if _, isRSA := pub.(*rsa.PublicKey); isRSA {
		return x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	return 0
}

func recordOf(cert *x509.Certificate, role provider.Role) *provider.CertificateRecord {
	return &provider.CertificateRecord{
		Serial:      cert.SerialNumber,
		Subject:     cert.Subject.String(),
		DNSNames:    cert.DNSNames,
		IPAddresses: cert.IPAddresses,
		NotBefore:   cert.NotBefore,
		NotAfter:    cert.NotAfter,
		Role:        role,
		Status:      provider.StatusValid,
		Raw:         cert.Raw,
	}
}
