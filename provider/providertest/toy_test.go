package providertest_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// toyCA is an honest in-memory CA with every capability: an ECDSA P-256
// root and intermediate, leaves profiled as kvmpki wants them. It exists
// to test the conformance suite.
type toyCA struct {
	root, issuer *x509.Certificate
	other        *x509.Certificate // a second issuing CA, listed with flaws.severalIssuers
	key          crypto.Signer     // the issuer's key
	flaws        flaws             // deliberate bugs, to prove the suite finds them

	mu        sync.Mutex
	certs     map[string]*toyRecord // by serial in hexadecimal
	crlNumber int64
}

// flaws are bugs a toyCA can be told to have.
type flaws struct {
	noCSRSignatureCheck bool // sign CSRs without checking their signature
	ignoreRevocation    bool // VerifyPeer accepts revoked certificates
	noSKI               bool // leaves without a subject key identifier
	staleCRLNumber      bool // every CRL has number 1
	acceptExpired       bool // VerifyPeer accepts expired certificates
	ipLiteralNames      bool // IP literals pass as DNS names (no provider.CheckIssueRequest)
	zeroUsageDefaults   bool // VerifyPeer takes a zero Usage as clientAuth, as it once did
	renewRevokedVague   bool // Renew refuses a revoked certificate without ErrRevoked

	// acme makes the toy behave like an ACME CA rather than have a bug:
	// it signs CSRs only, for their names only, issues server
	// certificates only, decides the validity itself, revokes by
	// certificate only, and refuses the rest with provider.Unsupported.
	// Wrap it in acmeToy for the capabilities of an ACME provider.
	acme bool

	// severalIssuers makes the toy list a second issuing intermediate
	// in CACertificates, before its own, as Let's Encrypt lists R10 and
	// R11: every Chain is then a path through CACertificates, not a
	// prefix of it.
	severalIssuers bool
}

type toyRecord struct {
	cert      *x509.Certificate
	role      provider.Role
	revoked   bool
	revokedAt time.Time
	reason    provider.RevocationReason
}

var (
	_ provider.Provider     = (*toyCA)(nil)
	_ provider.CRLSigner    = (*toyCA)(nil)
	_ provider.PeerVerifier = (*toyCA)(nil)
	_ provider.Renewer      = (*toyCA)(nil)
	_ provider.Inventory    = (*toyCA)(nil)
)

// Toy profile.
const (
	toyDefaultValidity = 24 * time.Hour
	toyBackdate        = 5 * time.Minute
	toyMaxNames        = 100
)

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

func newToyCA(f flaws) (*toyCA, error) {
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	root, err := toySign(&x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"kvmpki"}, CommonName: "toy root CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	issuer, key, err := toyIntermediate("toy issuing CA", root, rootKey)
	if err != nil {
		return nil, err
	}
	other, _, err := toyIntermediate("toy second issuing CA", root, rootKey)
	if err != nil {
		return nil, err
	}
	return &toyCA{root: root, issuer: issuer, other: other, key: key, flaws: f, certs: make(map[string]*toyRecord)}, nil
}

// toyIntermediate makes an issuing CA named cn under root.
func toyIntermediate(cn string, root *x509.Certificate, rootKey crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	cert, err := toySign(&x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"kvmpki"}, CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, root, key.Public(), rootKey)
	return cert, key, err
}

// toySign signs tmpl with a fresh serial; a nil parent self-signs.
func toySign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func (ca *toyCA) Name() string        { return "toy" }
func (ca *toyCA) Close() error        { return nil }
func (ca *toyCA) Description() string { return "in-memory CA for testing the conformance suite" }

func (ca *toyCA) CACertificates(context.Context) ([]*x509.Certificate, error) {
	if ca.flaws.severalIssuers {
		return []*x509.Certificate{ca.other, ca.issuer, ca.root}, nil
	}
	return []*x509.Certificate{ca.issuer, ca.root}, nil
}

func refuse(field, format string, args ...any) error {
	return &provider.RequestError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func (ca *toyCA) Issue(ctx context.Context, req *provider.IssueRequest) (*provider.IssueResult, error) {
	if req == nil {
		return nil, refuse("", "nil request")
	}
	if !req.Role.Valid() {
		return nil, refuse("role", "%v is not a role", req.Role)
	}
	if !ca.flaws.ipLiteralNames {
		if err := provider.CheckIssueRequest(req, nil); err != nil {
			return nil, err
		}
	}
	if ca.flaws.acme {
		switch {
		case req.CSR == nil:
			return nil, provider.Unsupported("csr", "this CA signs CSRs only")
		case req.Role != provider.RoleServer:
			return nil, provider.Unsupported("role", "this CA issues server certificates only")
		case req.Validity != 0:
			return nil, provider.Unsupported("validity", "this CA decides the validity")
		case req.MaxValidity != 0 && req.MaxValidity < toyDefaultValidity:
			return nil, provider.Unsupported("max validity", "this CA's validity is longer")
		case len(req.IPAddresses) > 0:
			return nil, provider.Unsupported("ip", "this CA certifies DNS names only")
		}
	}
	dnsNames, ips, cn := req.DNSNames, req.IPAddresses, req.CommonName
	if ca.flaws.acme {
		dnsNames, ips = nil, nil // the CSR's names only
	}
	var pub crypto.PublicKey
	var priv crypto.Signer
	if req.CSR != nil {
		csr, err := ca.checkCSR(req.CSR)
		if err != nil {
			return nil, err
		}
		pub = csr.PublicKey
		dnsNames = append(append([]string(nil), csr.DNSNames...), dnsNames...)
		ips = append(append([]net.IP(nil), csr.IPAddresses...), ips...)
		if cn == "" {
			cn = csr.Subject.CommonName
		}
	} else {
		var err error
		if priv, err = generateKey(req.KeyAlgorithm, req.KeySize); err != nil {
			return nil, err
		}
		pub = priv.Public()
	}
	validity := req.Validity
	if validity == 0 && req.MaxValidity > 0 {
		validity = min(toyDefaultValidity, req.MaxValidity)
	}
	cert, err := ca.sign(pub, cn, dnsNames, ips, req.Role, validity)
	if err != nil {
		return nil, err
	}
	return &provider.IssueResult{Certificate: cert, Chain: []*x509.Certificate{ca.issuer, ca.root}, PrivateKey: priv}, nil
}

// checkCSR parses a CSR and applies the policy of provider.CheckCSR, or,
// with the noCSRSignatureCheck flaw, all of it but the signature checks.
func (ca *toyCA) checkCSR(data []byte) (*x509.CertificateRequest, error) {
	if !ca.flaws.noCSRSignatureCheck {
		return provider.CheckCSR(data, nil)
	}
	csr, err := provider.ParseCSR(data)
	if err != nil {
		return nil, err
	}
	if err := provider.CheckPublicKey(csr.PublicKey, nil); err != nil {
		return nil, refuse("csr", "%v", err)
	}
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidBasicConstraints) {
			continue
		}
		var bc struct {
			IsCA bool `asn1:"optional"`
			Max  int  `asn1:"optional,default:-1"`
		}
		if rest, err := asn1.Unmarshal(ext.Value, &bc); err != nil || len(rest) > 0 || bc.IsCA {
			return nil, refuse("csr", "requests a CA certificate")
		}
	}
	return csr, nil
}

func generateKey(alg provider.KeyAlgorithm, size int) (crypto.Signer, error) {
	switch alg {
	case provider.KeyAlgorithmDefault:
		if size != 0 {
			return nil, refuse("key", "a key size needs an algorithm")
		}
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case provider.KeyAlgorithmECDSA:
		curves := map[int]elliptic.Curve{0: elliptic.P256(), 256: elliptic.P256(), 384: elliptic.P384(), 521: elliptic.P521()}
		c, ok := curves[size]
		if !ok {
			return nil, refuse("key", "no %d-bit curve", size)
		}
		return ecdsa.GenerateKey(c, rand.Reader)
	case provider.KeyAlgorithmRSA:
		if size == 0 {
			size = 2048
		}
		if size < 2048 || size > 8192 {
			return nil, refuse("key", "%d-bit RSA key", size)
		}
		return rsa.GenerateKey(rand.Reader, size)
	}
	return nil, refuse("key", "unknown algorithm %v", alg)
}

// validDNSName reports whether name is a host name of letters, digits and
// hyphens.
func validDNSName(name string) bool {
	if len(name) == 0 || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// sign issues a leaf and records it.
func (ca *toyCA) sign(pub crypto.PublicKey, cn string, dnsNames []string, ips []net.IP, role provider.Role, validity time.Duration) (*x509.Certificate, error) {
	now := time.Now()
	switch {
	case validity == 0:
		validity = toyDefaultValidity
	case validity < 0:
		return nil, refuse("validity", "negative")
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.issuer.NotAfter) {
		return nil, refuse("validity", "%v outlives the CA", validity)
	}
	dnsNames, ips = dedupe(dnsNames, ips)
	if len(dnsNames)+len(ips) > toyMaxNames {
		return nil, refuse("dns", "%d names, at most %d", len(dnsNames)+len(ips), toyMaxNames)
	}
	for _, n := range dnsNames {
		if !validDNSName(n) {
			return nil, refuse("dns", "invalid name %q", n)
		}
	}
	for _, ip := range ips {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return nil, refuse("ip", "invalid address")
		}
	}
	switch {
	case cn != "":
	case len(dnsNames) > 0:
		cn = dnsNames[0]
	case len(ips) > 0:
		cn = ips[0].String()
	}
	if len(cn) > 64 {
		return nil, refuse("cn", "longer than 64 characters")
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-toyBackdate),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		ExtKeyUsage:           role.ExtKeyUsages(),
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	// The kvmpki profile: RSA server ends need digitalSignature and
	// keyEncipherment for libvirt; other leaves carry no keyUsage.
	if _, isRSA := pub.(*rsa.PublicKey); isRSA && role != provider.RoleClient {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	if !ca.flaws.noSKI {
		spki, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, refuse("key", "%v", err)
		}
		sum := sha256.Sum256(spki)
		tmpl.SubjectKeyId = sum[:20]
	}

	ca.mu.Lock()
	defer ca.mu.Unlock()
	for {
		cert, err := toySign(tmpl, ca.issuer, pub, ca.key)
		if err != nil {
			return nil, err
		}
		id := cert.SerialNumber.Text(16)
		if _, dup := ca.certs[id]; dup {
			continue
		}
		ca.certs[id] = &toyRecord{cert: cert, role: role}
		return cert, nil
	}
}

func dedupe(dnsNames []string, ips []net.IP) ([]string, []net.IP) {
	var names []string
	seen := make(map[string]bool)
	for _, n := range dnsNames {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	var addrs []net.IP
	for _, ip := range ips {
		k := "ip:" + ip.String()
		if !seen[k] {
			seen[k] = true
			addrs = append(addrs, ip)
		}
	}
	return names, addrs
}

func (ca *toyCA) Revoke(ctx context.Context, req *provider.RevokeRequest) error {
	if ca.flaws.acme && (req == nil || req.Certificate == nil) {
		return provider.Unsupported("certificate", "this CA revokes by certificate only")
	}
	serial, err := req.SerialNumber()
	if err != nil {
		return err
	}
	if !req.Reason.Valid() || req.Reason == provider.ReasonRemoveFromCRL {
		return refuse("reason", "%v", req.Reason)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	rec, ok := ca.certs[serial.Text(16)]
	switch {
	case !ok || (req.Certificate != nil && !rec.cert.Equal(req.Certificate)):
		return fmt.Errorf("toy: serial %s: %w", provider.FormatSerial(serial), provider.ErrNotFound)
	case rec.revoked:
		return fmt.Errorf("toy: serial %s: %w", provider.FormatSerial(serial), provider.ErrAlreadyRevoked)
	}
	rec.revoked, rec.revokedAt, rec.reason = true, time.Now(), req.Reason
	return nil
}

// lookup returns the record of cert if the toy issued it.
func (ca *toyCA) lookup(cert *x509.Certificate) (toyRecord, bool) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	rec, ok := ca.certs[cert.SerialNumber.Text(16)]
	if !ok || !rec.cert.Equal(cert) {
		return toyRecord{}, false
	}
	return *rec, true
}
