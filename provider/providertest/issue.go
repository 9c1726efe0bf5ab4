package providertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// validityTolerance absorbs clock steps and second rounding when the suite
// compares validity periods.
const validityTolerance = 2 * time.Minute

// issued is a certificate the suite obtained.
type issued struct {
	req *provider.IssueRequest
	res *provider.IssueResult
	// key is the private key of the certificate: the generated one, or
	// the key of the suite's CSR.
	key crypto.Signer
	// start and end bracket the Issue call.
	start, end time.Time
}

func (it *issued) cert() *x509.Certificate { return it.res.Certificate }

// request returns an issue request for role with fresh names. Unless
// NoKeyGeneration is set, it asks for a key of the first KeyTypes entry;
// otherwise [suite.issue] adds a CSR for a new P-256 key.
func (s *suite) request(t *testing.T, role provider.Role) *provider.IssueRequest {
	t.Helper()
	req := &provider.IssueRequest{
		DNSNames:    []string{s.name(role.String())},
		IPAddresses: s.ips,
		Role:        role,
	}
	if !s.noKeyGen {
		req.KeyAlgorithm = s.keyTypes[0].Algorithm
		req.KeySize = s.keyTypes[0].Size
	}
	return req
}

// issue issues a certificate for role, after letting edit change the
// request (edit may be nil), and fails t unless Issue succeeds. With
// NoKeyGeneration, a request that edit left without a CSR gets one for a
// new P-256 key, made after edit so that it holds the final names. If
// edit puts a CSR in the request, the result's key is unknown.
func (s *suite) issue(t *testing.T, p provider.Provider, role provider.Role, edit func(*provider.IssueRequest)) *issued {
	t.Helper()
	req := s.request(t, role)
	if edit != nil {
		edit(req)
	}
	var key crypto.Signer
	if s.noKeyGen && req.CSR == nil {
		k := newECDSAKey(t)
		req.CSR, key = s.csrFor(t, k, req), k
	}
	return s.issueRequest(t, p, req, key)
}

func (s *suite) issueRequest(t *testing.T, p provider.Provider, req *provider.IssueRequest, key crypto.Signer) *issued {
	t.Helper()
	it := &issued{req: req, key: key, start: time.Now()}
	res, err := p.Issue(t.Context(), req)
	it.end = time.Now()
	require.NoError(t, err, "Issue")
	require.NotNil(t, res, "Issue returned no result")
	require.NotNil(t, res.Certificate, "Issue returned no certificate")
	it.res = res
	if req.CSR == nil {
		require.NotNil(t, res.PrivateKey, "Issue without a CSR must return the generated key")
		it.key = res.PrivateKey
	}
	return it
}

// checkLeaf makes the checks every issued certificate must pass.
func (s *suite) checkLeaf(t *testing.T, ca *caInfo, it *issued) {
	t.Helper()
	c := it.cert()
	ca.checkChain(t, c, it.res.Chain)
	issuer := it.res.Chain[0]

	assert.False(t, c.IsCA, "a leaf must not be a CA")
	assert.Zero(t, c.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign), "a leaf must not sign certificates or CRLs")
	assert.Equal(t, issuer.RawSubject, c.RawIssuer, "issuer name")
	assert.NoError(t, c.CheckSignatureFrom(issuer), "a leaf must be signed by the issuing CA")
	assertNoWeakSignature(t, c)

	assertSerial(t, c.SerialNumber)
	assert.NotEmpty(t, c.SubjectKeyId, "subject key identifier")
	assert.Equal(t, issuer.SubjectKeyId, c.AuthorityKeyId, "authority key identifier must be the issuer's subject key identifier")

	assert.False(t, c.NotAfter.After(issuer.NotAfter), "NotAfter %v outlives the issuer's %v", c.NotAfter, issuer.NotAfter)
	assert.False(t, c.NotBefore.After(it.end.Add(time.Second)), "NotBefore %v: the certificate must be valid at once", c.NotBefore)
	assert.True(t, c.NotAfter.After(it.end), "NotAfter %v is in the past", c.NotAfter)

	for _, name := range it.req.DNSNames {
		assert.Contains(t, c.DNSNames, name, "requested DNS name")
	}
	for _, ip := range it.req.IPAddresses {
		assert.True(t, containsIP(c.IPAddresses, ip), "requested IP address %v missing from %v", ip, c.IPAddresses)
	}

	if it.req.CSR == nil {
		require.NotNil(t, it.res.PrivateKey)
		assert.True(t, publicKeysEqual(it.res.PrivateKey.Public(), c.PublicKey), "PrivateKey must match the certificate")
	} else {
		assert.Nil(t, it.res.PrivateKey, "PrivateKey must be nil when the request had a CSR")
		if it.key != nil {
			assert.True(t, publicKeysEqual(it.key.Public(), c.PublicKey), "the certificate must certify the CSR's key")
		}
	}

	// The role decides which TLS ends accept the certificate.
	role := it.req.Role
	assert.Equal(t, role.String(), provider.RoleOf(c).String(), "role inferred from the extended key usages")
	serverOK := role == provider.RoleHost || role == provider.RoleServer
	clientOK := role == provider.RoleHost || role == provider.RoleClient
	for _, u := range []struct {
		usage x509.ExtKeyUsage
		want  bool
		name  string
	}{
		{x509.ExtKeyUsageServerAuth, serverOK, "serverAuth"},
		{x509.ExtKeyUsageClientAuth, clientOK, "clientAuth"},
	} {
		_, err := c.Verify(ca.verifyOptions(u.usage))
		if u.want {
			assert.NoError(t, err, "a %s certificate must verify for %s", role, u.name)
		} else {
			assert.Error(t, err, "a %s certificate must not verify for %s", role, u.name)
		}
	}
}

// assertSerial checks RFC 5280 section 4.1.2.2: positive, at most 20
// octets.
func assertSerial(t *testing.T, serial *big.Int) {
	t.Helper()
	if !assert.NotNil(t, serial, "serial number") {
		return
	}
	assert.Positive(t, serial.Sign(), "serial number must be positive")
	// A positive DER INTEGER needs BitLen/8+1 octets.
	assert.LessOrEqual(t, serial.BitLen()/8+1, 20, "serial number %s is longer than 20 octets", serial.Text(16))
}

func containsIP(ips []net.IP, ip net.IP) bool {
	for _, i := range ips {
		if i.Equal(ip) {
			return true
		}
	}
	return false
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

var roles = []provider.Role{provider.RoleHost, provider.RoleClient, provider.RoleServer}

func (s *suite) testIssue(t *testing.T, p provider.Provider) {
	ca := s.caCertificates(t, p)

	for _, role := range roles {
		s.run(t, role.String(), func(t *testing.T) {
			s.needRole(t, role)
			s.checkLeaf(t, ca, s.issue(t, p, role, nil))
		})
	}

	s.run(t, "CommonName", func(t *testing.T) {
		it := s.issue(t, p, s.anyRole(), nil)
		assert.Equal(t, it.req.DNSNames[0], it.cert().Subject.CommonName, "an empty CommonName defaults to the first DNS name")
		cn := s.name("cn")
		it = s.issue(t, p, s.anyRole(), func(req *provider.IssueRequest) {
			req.CommonName = cn
			req.DNSNames = append(req.DNSNames, cn)
		})
		assert.Equal(t, cn, it.cert().Subject.CommonName)
	})

	s.run(t, "Validity", func(t *testing.T) {
		const validity = 36 * time.Hour
		if s.fixedValidity {
			req := s.request(t, s.anyRole())
			req.Validity = validity
			if s.noKeyGen {
				req.CSR = s.csrFor(t, newECDSAKey(t), req)
			}
			res, err := p.Issue(t.Context(), req)
			assert.ErrorIs(t, err, errors.ErrUnsupported, "with Options.FixedValidity a requested validity must be refused with provider.Unsupported")
			assert.ErrorIs(t, err, provider.ErrInvalidRequest, "with Options.FixedValidity a requested validity must be refused with provider.Unsupported")
			assert.Nil(t, res)
			return
		}
		it := s.issue(t, p, s.anyRole(), func(req *provider.IssueRequest) { req.Validity = validity })
		c := it.cert()
		// Providers may backdate NotBefore against clock skew, and then
		// count the validity from NotBefore or from the time of issue.
		fromIssue := !c.NotAfter.Before(it.start.Add(validity-validityTolerance)) &&
			!c.NotAfter.After(it.end.Add(validity+validityTolerance))
		span := c.NotAfter.Sub(c.NotBefore)
		fromNotBefore := span > validity-validityTolerance && span < validity+validityTolerance
		assert.True(t, fromIssue || fromNotBefore,
			"requested validity %v; got NotBefore %v, NotAfter %v, issued at %v", validity, c.NotBefore, c.NotAfter, it.start)
	})

	s.run(t, "MaxValidity", func(t *testing.T) {
		// An upper bound, not a validity: a provider that chooses the
		// validity stays within it, one that decides it (ACME) issues
		// when its own validity fits and refuses when it does not.
		const bound = 36 * time.Hour
		if s.fixedValidity {
			const long = 100 * 365 * 24 * time.Hour
			it := s.issue(t, p, s.anyRole(), func(req *provider.IssueRequest) { req.MaxValidity = long })
			assert.LessOrEqual(t, it.cert().NotAfter.Sub(it.start), long, "NotAfter beyond MaxValidity")
			req := s.request(t, s.anyRole())
			req.MaxValidity = time.Minute
			if s.noKeyGen {
				req.CSR = s.csrFor(t, newECDSAKey(t), req)
			}
			res, err := p.Issue(t.Context(), req)
			if err == nil {
				assert.LessOrEqual(t, res.Certificate.NotAfter.Sub(res.Certificate.NotBefore), time.Minute+validityTolerance,
					"a MaxValidity the CA's validity exceeds must be refused with provider.Unsupported, or honoured")
				return
			}
			assert.ErrorIs(t, err, errors.ErrUnsupported, "a MaxValidity shorter than the CA's validity must be refused with provider.Unsupported")
			assert.ErrorIs(t, err, provider.ErrInvalidRequest, "a MaxValidity shorter than the CA's validity must be refused with provider.Unsupported")
			return
		}
		it := s.issue(t, p, s.anyRole(), func(req *provider.IssueRequest) { req.MaxValidity = bound })
		c := it.cert()
		assert.False(t, c.NotAfter.After(it.end.Add(bound+validityTolerance)),
			"MaxValidity %v; got NotAfter %v, issued at %v", bound, c.NotAfter, it.start)
		assert.True(t, c.NotAfter.After(it.end), "NotAfter %v is in the past", c.NotAfter)
	})

	s.run(t, "UniqueSerials", func(t *testing.T) {
		const n = 50
		seen := make(map[string]bool, n)
		for range n {
			key := newECDSAKey(t)
			req := &provider.IssueRequest{DNSNames: []string{s.name("serial")}, Role: s.anyRole()}
			req.CSR = s.csrFor(t, key, req)
			it := s.issueRequest(t, p, req, key)
			serial := it.cert().SerialNumber.Text(16)
			assert.False(t, seen[serial], "serial %s issued twice", serial)
			seen[serial] = true
		}
	})

	s.run(t, "KeyTypes", func(t *testing.T) {
		if s.noKeyGen {
			t.Skip("Options.NoKeyGeneration is set")
		}
		for _, kt := range s.keyTypes {
			s.run(t, kt.String(), func(t *testing.T) {
				it := s.issue(t, p, s.anyRole(), func(req *provider.IssueRequest) {
					req.KeyAlgorithm, req.KeySize = kt.Algorithm, kt.Size
				})
				s.checkLeaf(t, ca, it)
				assertKeyType(t, kt, it.cert().PublicKey)
			})
		}
	})

	s.run(t, "LibvirtKeyUsage", func(t *testing.T) {
		// libvirt up to 11.3 refuses a certificate whose (critical, as
		// Go writes it) keyUsage lacks keyEncipherment, whatever the
		// key type; without the extension every usage is allowed. See
		// the x509 profiles of kvmpki.
		rsaKey, _ := s.rsaKeys(t)
		tested := 0
		for _, role := range []provider.Role{provider.RoleHost, provider.RoleServer} {
			if !s.has(role) {
				continue
			}
			tested++
			generated := s.issue(t, p, role, nil).cert()
			fromRSA := s.issue(t, p, role, func(req *provider.IssueRequest) {
				req.CSR = s.csrFor(t, rsaKey, req)
			}).cert()
			for _, c := range []*x509.Certificate{generated, fromRSA} {
				if c.KeyUsage != 0 {
					want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
					assert.Equal(t, want, c.KeyUsage&want, "%s certificate for a %T: keyUsage must be absent or include digitalSignature and keyEncipherment", role, c.PublicKey)
				}
			}
		}
		if tested == 0 {
			t.Skip("Options.Roles holds neither host nor server")
		}
	})
}

// assertKeyType checks that pub is a key of kind kt.
func assertKeyType(t *testing.T, kt KeyType, pub crypto.PublicKey) {
	t.Helper()
	switch kt.Algorithm {
	case provider.KeyAlgorithmRSA:
		k, ok := pub.(*rsa.PublicKey)
		require.True(t, ok, "want an RSA key, got %T", pub)
		if kt.Size != 0 {
			assert.Equal(t, kt.Size, k.N.BitLen(), "RSA modulus size")
		} else {
			assert.GreaterOrEqual(t, k.N.BitLen(), 2048, "RSA modulus size")
		}
	case provider.KeyAlgorithmECDSA:
		k, ok := pub.(*ecdsa.PublicKey)
		require.True(t, ok, "want an ECDSA key, got %T", pub)
		if kt.Size != 0 {
			assert.Equal(t, kt.Size, k.Curve.Params().BitSize, "ECDSA curve size")
		}
	default:
		switch k := pub.(type) {
		case *rsa.PublicKey:
			assert.GreaterOrEqual(t, k.N.BitLen(), 2048, "default RSA modulus size")
		case *ecdsa.PublicKey:
			assert.Contains(t, []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()}, k.Curve, "default curve")
		case ed25519.PublicKey:
		default:
			t.Errorf("default key of unexpected type %T", pub)
		}
	}
}

func (s *suite) testIssueCSR(t *testing.T, p provider.Provider) {
	ca := s.caCertificates(t, p)
	keys := []struct {
		name string
		key  func(t *testing.T) crypto.Signer
	}{
		{name: "rsa-2048", key: func(t *testing.T) crypto.Signer { k, _ := s.rsaKeys(t); return k }},
		{name: "ecdsa-p256", key: func(t *testing.T) crypto.Signer { return newECDSAKey(t) }},
	}
	for _, k := range keys {
		s.run(t, k.name, func(t *testing.T) {
			key := k.key(t)
			csrNames := []string{s.name("csr"), s.name("csr-alt")}
			// The platform vouches for the CSR's names too: a provider
			// may leave out CSR names the request does not list, so
			// that a host cannot claim another host's name.
			reqNames := append([]string{s.name("platform")}, csrNames...)
			req := &provider.IssueRequest{DNSNames: reqNames, IPAddresses: s.ips, Role: s.anyRole()}
			if s.exactNames {
				// The CA certifies the CSR's names only.
				req.CSR = s.csrFor(t, key, req)
			} else {
				req.CSR = newCSR(t, key, csrNames, s.ips)
			}
			it := s.issueRequest(t, p, req, key)
			s.checkLeaf(t, ca, it)
			for _, name := range csrNames {
				assert.Contains(t, it.cert().DNSNames, name, "DNS name of the CSR")
			}
		})
	}
}
