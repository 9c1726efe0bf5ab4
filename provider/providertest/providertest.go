package providertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// Options configures [Run]. A nil *Options, like the zero Options, runs
// every check with the defaults, for a CA with every feature (rootca).
// The other fields describe what a third-party CA cannot do, so that the
// suite adapts its requests instead of failing or skipping whole groups.
type Options struct {
	// Domain is the DNS domain under which the suite requests names, such
	// as host-1.Domain. If empty, "conformance.test" is used (".test" is
	// reserved by RFC 2606). Set it when the provider only issues for
	// some domains.
	Domain string

	// IPAddresses are the addresses the suite puts in its requests. If
	// nil, 192.0.2.1 and 2001:db8::1 (RFC 5737 and RFC 3849 documentation
	// addresses) are used, unless NoIPAddresses is set.
	IPAddresses []net.IP

	// NoIPAddresses stops the suite from requesting IP address names, for
	// a provider that cannot certify addresses (most ACME CAs).
	NoIPAddresses bool

	// NoKeyGeneration says the provider only signs CSRs and refuses
	// requests without one. The checks that would ask it for a key pair
	// send a CSR for an ECDSA P-256 key instead, and the KeyTypes checks
	// are skipped.
	NoKeyGeneration bool

	// KeyTypes are the key pairs the suite asks the provider to generate,
	// one host certificate each; the first is also used by the other
	// checks that need a generated key. If nil, ECDSA P-256 and the
	// provider's default (KeyAlgorithmDefault) are tested.
	KeyTypes []KeyType

	// Roles are the roles the provider can issue. If nil, all three
	// (host, client, server). The checks of a role left out are skipped;
	// every other check uses a role listed here (host if listed), and no
	// group's setup asks for a role left out. Checks that need a client
	// certificate (MutualTLS) or a server one are skipped when no listed
	// role gives one.
	Roles []provider.Role

	// ExactCSRNames says the provider certifies exactly the names of the
	// CSR and none that only the request lists (an ACME CA). The suite
	// then puts every name it requests into its CSRs as well (the common
	// name as the subject's), so that the checks on names, serials and
	// concurrency still run.
	ExactCSRNames bool

	// FixedValidity says the CA decides the validity itself (Let's
	// Encrypt: 90 days). The suite then sends no IssueRequest.Validity
	// or RenewRequest.Validity, except in Issue/Validity, which instead
	// expects a request for a validity to be refused with
	// [provider.Unsupported] (matching both provider.ErrInvalidRequest
	// and errors.ErrUnsupported). Issue/MaxValidity then expects a
	// MaxValidity of 100 years to be accepted and one of a minute to be
	// refused the same way (or honoured); without FixedValidity, it
	// expects a certificate within a 36-hour MaxValidity.
	FixedValidity bool

	// Skip maps check names, as "Refusals/SHA1CSR" or a whole group as
	// "Renew", to the reason the provider legitimately fails them. Run
	// skips those checks and prints the reason. A name that matches no
	// check fails the run.
	Skip map[string]string
}

// KeyType is a kind of key pair a provider generates.
type KeyType struct {
	// Algorithm is the key algorithm; KeyAlgorithmDefault lets the
	// provider choose.
	Algorithm provider.KeyAlgorithm
	// Size is the RSA modulus size or the ECDSA curve size in bits; zero
	// lets the provider choose.
	Size int
}

// String returns a name such as "ecdsa-256", "rsa" or "default", used as
// the name of the check.
func (k KeyType) String() string {
	if k.Size == 0 {
		return k.Algorithm.String()
	}
	return fmt.Sprintf("%s-%d", k.Algorithm, k.Size)
}

const defaultDomain = "conformance.test"

var defaultKeyTypes = []KeyType{
	{Algorithm: provider.KeyAlgorithmECDSA, Size: 256},
	{Algorithm: provider.KeyAlgorithmDefault},
}

// Run runs the conformance checks against the providers newProvider
// returns, each check as a subtest of t named as in the package
// documentation.
//
// Run calls newProvider once per check group (Identity, CACertificates,
// Issue, ...), with the group's *testing.T, so that a provider can
// register its cleanup with t.Cleanup. newProvider may as well return one
// shared provider every time if creating one is slow: no check assumes a
// fresh provider, and checks only look for the certificates they issued
// themselves. Checks run one after the other, except for the Concurrency
// group.
func Run(t *testing.T, newProvider func(t *testing.T) provider.Provider, opts *Options) {
	t.Helper()
	if newProvider == nil {
		t.Fatal("providertest: Run needs a newProvider function")
	}
	s := newSuite(t, newProvider, opts)
	for _, r := range s.roles {
		if !r.Valid() {
			t.Errorf("providertest: Options.Roles holds %v, which is not host, client or server", r)
		}
	}
	for name := range s.skip {
		if !s.known(name) {
			t.Errorf("providertest: Options.Skip names no check: %q", name)
		}
	}

	s.group(t, "Identity", s.testIdentity)
	s.group(t, "CACertificates", s.testCACertificates)
	s.group(t, "Issue", s.testIssue)
	s.group(t, "IssueCSR", s.testIssueCSR)
	s.group(t, "Refusals", s.testRefusals)
	s.group(t, "Revoke", s.testRevoke)
	s.group(t, "CRL", s.testCRL)
	s.group(t, "VerifyPeer", s.testVerifyPeer)
	s.group(t, "Inventory", s.testInventory)
	s.group(t, "Renew", s.testRenew)
	s.group(t, "RevocationNotifier", s.testNotifier)
	s.group(t, "OCSPSigner", s.testOCSPSigner)
	s.group(t, "RotationLeaser", s.testRotationLeaser)
	s.group(t, "Concurrency", s.testConcurrency)
}

// checkNames lists every check, groups included, but for the
// Issue/KeyTypes/<type> ones, which depend on Options.KeyTypes.
var checkNames = []string{
	"Identity", "Identity/Name", "Identity/Description",
	"CACertificates", "CACertificates/IssuingCA", "CACertificates/Chain", "CACertificates/Bundle",
	"Issue", "Issue/host", "Issue/client", "Issue/server", "Issue/CommonName", "Issue/Validity",
	"Issue/MaxValidity", "Issue/UniqueSerials", "Issue/KeyTypes", "Issue/LibvirtKeyUsage",
	"IssueCSR", "IssueCSR/rsa-2048", "IssueCSR/ecdsa-p256",
	"Refusals", "Refusals/NoRole", "Refusals/BadCSRSignature", "Refusals/WeakRSAKey",
	"Refusals/CSRRequestsCA", "Refusals/SHA1CSR", "Refusals/MalformedCSR",
	"Refusals/MalformedCSR/garbage", "Refusals/MalformedCSR/truncated", "Refusals/MalformedCSR/wrongPEMType",
	"Refusals/TooManyDNSNames", "Refusals/IPLiteralDNSName", "Refusals/NULInDNSName", "Refusals/ValidityBeyondCA",
	"Revoke", "Revoke/UnknownSerial", "Revoke/Revoke", "Revoke/ByCertificate", "Revoke/AlreadyRevoked",
	"CRL", "CRL/Signature", "CRL/Entry", "CRL/Number", "CRL/Update",
	"VerifyPeer", "VerifyPeer/Accepted", "VerifyPeer/Revoked", "VerifyPeer/UnknownAuthority",
	"VerifyPeer/IncompatibleUsage", "VerifyPeer/NameMismatch", "VerifyPeer/Expired",
	"VerifyPeer/NoCertificate", "VerifyPeer/BadRequest", "VerifyPeer/MutualTLS",
	"Inventory", "Inventory/Lookup", "Inventory/Revoked", "Inventory/List", "Inventory/Filters",
	"Inventory/UnknownSerial",
	"Renew", "Renew/Successor", "Renew/NewKey", "Renew/Revoked", "Renew/Foreign",
	"RevocationNotifier", "RevocationNotifier/NoticeAfterRevoke", "RevocationNotifier/ClosedWhenDone",
	"OCSPSigner", "OCSPSigner/Good", "OCSPSigner/Revoked", "OCSPSigner/Unknown", "OCSPSigner/ForeignIssuer",
	"RotationLeaser", "RotationLeaser/Exclusive", "RotationLeaser/Concurrent",
	"Concurrency", "Concurrency/IssueRevoke",
}

// known reports whether name is the name of a check.
func (s *suite) known(name string) bool {
	if slices.Contains(checkNames, name) {
		return true
	}
	for _, kt := range s.keyTypes {
		if name == "Issue/KeyTypes/"+kt.String() {
			return true
		}
	}
	return false
}

// suite holds the state of one Run.
type suite struct {
	root          string
	newProvider   func(t *testing.T) provider.Provider
	domain        string
	ips           []net.IP
	keyTypes      []KeyType
	noKeyGen      bool
	roles         []provider.Role
	exactNames    bool
	fixedValidity bool
	skip          map[string]string

	keysOnce sync.Once
	rsa2048  *rsa.PrivateKey
	rsa1024  *rsa.PrivateKey
	keysErr  error

	counter atomic.Int64 // makes names unique
}

func newSuite(t *testing.T, newProvider func(t *testing.T) provider.Provider, opts *Options) *suite {
	if opts == nil {
		opts = &Options{}
	}
	s := &suite{
		root:          t.Name(),
		newProvider:   newProvider,
		domain:        opts.Domain,
		noKeyGen:      opts.NoKeyGeneration,
		roles:         slices.Clone(opts.Roles),
		exactNames:    opts.ExactCSRNames,
		fixedValidity: opts.FixedValidity,
		skip:          opts.Skip,
	}
	if len(s.roles) == 0 {
		s.roles = []provider.Role{provider.RoleHost, provider.RoleClient, provider.RoleServer}
	}
	if s.domain == "" {
		s.domain = defaultDomain
	}
	for _, kt := range opts.KeyTypes {
		if !slices.Contains(s.keyTypes, kt) {
			s.keyTypes = append(s.keyTypes, kt)
		}
	}
	if len(s.keyTypes) == 0 {
		s.keyTypes = defaultKeyTypes
	}
	switch {
	case opts.NoIPAddresses:
	case opts.IPAddresses != nil:
		s.ips = slices.Clone(opts.IPAddresses)
	default:
		s.ips = []net.IP{net.ParseIP("192.0.2.1").To4(), net.ParseIP("2001:db8::1")}
	}
	return s
}

// run runs f as the subtest name of t, unless Options.Skip names it.
func (s *suite) run(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		check := strings.TrimPrefix(t.Name(), s.root+"/")
		if !s.known(check) {
			t.Errorf("providertest: check %q is missing from checkNames", check)
		}
		for c := check; ; {
			if reason, ok := s.skip[c]; ok {
				t.Skipf("skipped by Options.Skip[%q]: %s", c, reason)
			}
			i := strings.LastIndexByte(c, '/')
			if i < 0 {
				break
			}
			c = c[:i]
		}
		f(t)
	})
}

// group runs f as a top-level check group with a provider of its own.
func (s *suite) group(t *testing.T, name string, f func(t *testing.T, p provider.Provider)) {
	t.Helper()
	s.run(t, name, func(t *testing.T) {
		p := s.newProvider(t)
		require.NotNil(t, p, "newProvider returned nil")
		f(t, p)
	})
}

// name returns a DNS name under the suite's domain that no other request
// of this Run uses.
func (s *suite) name(label string) string {
	return fmt.Sprintf("%s-%d.%s", label, s.counter.Add(1), s.domain)
}

// rsaKeys returns the RSA keys the CSR checks need, generated once per Run
// because RSA key generation is slow.
func (s *suite) rsaKeys(t *testing.T) (rsa2048, rsa1024 *rsa.PrivateKey) {
	t.Helper()
	s.keysOnce.Do(func() {
		s.rsa2048, s.keysErr = rsa.GenerateKey(rand.Reader, 2048)
		if s.keysErr == nil {
			s.rsa1024, s.keysErr = rsa.GenerateKey(rand.Reader, 1024)
		}
	})
	require.NoError(t, s.keysErr)
	return s.rsa2048, s.rsa1024
}

func newECDSAKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return key
}

// has reports whether the provider issues role.
func (s *suite) has(role provider.Role) bool { return slices.Contains(s.roles, role) }

// anyRole returns the role for checks whose point is not the role: host
// if the provider issues it, else the first of Options.Roles.
func (s *suite) anyRole() provider.Role {
	if s.has(provider.RoleHost) {
		return provider.RoleHost
	}
	return s.roles[0]
}

// serverRole returns a role whose certificates TLS servers accept, if the
// provider issues one: host, else server.
func (s *suite) serverRole() (provider.Role, bool) {
	for _, r := range []provider.Role{provider.RoleHost, provider.RoleServer} {
		if s.has(r) {
			return r, true
		}
	}
	return 0, false
}

// clientRole is serverRole for TLS clients: host, else client.
func (s *suite) clientRole() (provider.Role, bool) {
	for _, r := range []provider.Role{provider.RoleHost, provider.RoleClient} {
		if s.has(r) {
			return r, true
		}
	}
	return 0, false
}

// needRole skips t unless the provider issues role.
func (s *suite) needRole(t *testing.T, role provider.Role) {
	t.Helper()
	if !s.has(role) {
		t.Skipf("Options.Roles leaves out %s", role)
	}
}

// csrFor returns a DER CSR for key to go with req: without names, so
// that the provider must add the names the request vouches for, or, with
// Options.ExactCSRNames, with every name of req (the common name, else
// the first DNS name, as the subject's).
func (s *suite) csrFor(t *testing.T, key crypto.Signer, req *provider.IssueRequest) []byte {
	t.Helper()
	if !s.exactNames {
		return newCSR(t, key, nil, nil)
	}
	tmpl := &x509.CertificateRequest{DNSNames: req.DNSNames, IPAddresses: req.IPAddresses}
	switch {
	case req.CommonName != "":
		tmpl.Subject.CommonName = req.CommonName
	case len(req.DNSNames) > 0:
		tmpl.Subject.CommonName = req.DNSNames[0]
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	return der
}

// newCSR returns a DER CSR for key with the given names.
func newCSR(t *testing.T, key crypto.Signer, dnsNames []string, ips []net.IP) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{DNSNames: dnsNames, IPAddresses: ips}
	if len(dnsNames) > 0 {
		tmpl.Subject = pkix.Name{CommonName: dnsNames[0]}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	return der
}
