package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/kvmpki/kvmpki/provider"
)

// Issue orders a certificate from the CA. With a CSR, the CSR's names
// must be exactly the names the request vouches for (an ACME CA certifies
// the CSR's names and cannot add any); without one, the provider
// generates the key (ECDSA P-256 by default) and a CSR for the request's
// names. A validity, or a role other than Config.Role, is refused with
// provider.Unsupported: the CA decides both. A MaxValidity is met when
// the CA's own validity fits in it; a certificate that ends later is
// revoked and the request refused with provider.Unsupported.
func (p *Provider) Issue(ctx context.Context, req *provider.IssueRequest) (*provider.IssueResult, error) {
	if err := p.check(ctx); err != nil {
		return nil, err
	}
	if err := provider.CheckIssueRequest(req, p.policy); err != nil {
		return nil, err
	}
	if req.Role != p.role {
		return nil, provider.Unsupported("role", fmt.Sprintf("the CA's profile issues %s certificates only (its extended key usages)", p.role))
	}
	if req.Validity != 0 {
		return nil, provider.Unsupported("validity", "an ACME CA decides the validity itself")
	}
	dns, ips := normalize(req.DNSNames, req.IPAddresses)

	var (
		csrDER []byte
		pub    crypto.PublicKey
		key    crypto.Signer
	)
	if req.CSR != nil {
		csr, err := provider.CheckCSR(req.CSR, p.policy)
		if err != nil {
			return nil, err
		}
		if err := sameNames(csr, dns, ips, req.CommonName); err != nil {
			return nil, err
		}
		csrDER, pub = csr.Raw, csr.PublicKey
	} else {
		var err error
		if key, err = generateKey(req.KeyAlgorithm, req.KeySize); err != nil {
			return nil, err
		}
		if len(dns)+len(ips) == 0 {
			return nil, &provider.RequestError{Field: "names", Reason: "an ACME certificate needs at least one DNS name or IP address"}
		}
		cn := req.CommonName
		switch {
		case cn != "" && !slices.Contains(dns, strings.ToLower(cn)) && !containsIPString(ips, cn):
			return nil, provider.Unsupported("common name", "an ACME CA certifies only names it validated: list the common name among the DNS names or IP addresses")
		case cn == "" && len(dns) > 0:
			cn = dns[0]
		case cn == "":
			cn = ips[0].String()
		}
		// CAs take the common name from the first name (Pebble 2.4
		// ignores the CSR's): put it first.
		if i := slices.Index(dns, strings.ToLower(cn)); i > 0 {
			dns = slices.Concat([]string{dns[i]}, dns[:i], dns[i+1:])
		}
		csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: cn}, DNSNames: dns, IPAddresses: ips,
		}, key)
		if err != nil {
			return nil, fmt.Errorf("acme: create CSR: %w", err)
		}
		pub = key.Public()
	}

	start := time.Now()
	ders, err := p.order(ctx, dns, ips, csrDER)
	if err != nil {
		return nil, err
	}
	leaf, chain, err := p.checkIssued(ctx, ders, pub, dns, ips)
	if err != nil {
		return nil, err
	}
	if max := req.MaxValidity; max > 0 && leaf.NotAfter.After(start.Add(max)) {
		// The CA's validity is known once it issued: what does not fit
		// is withdrawn, not handed out.
		var err error = provider.Unsupported("max validity", fmt.Sprintf("the CA issues for %v, longer than %v", leaf.NotAfter.Sub(leaf.NotBefore).Round(time.Hour), max))
		if rerr := p.client.RevokeCert(ctx, nil, leaf.Raw, acme.CRLReasonCessationOfOperation); rerr != nil {
			err = errors.Join(err, fmt.Errorf("acme: revoking serial %s failed: %w", provider.FormatSerial(leaf.SerialNumber), mapError(rerr)))
		}
		return nil, err
	}
	res := &provider.IssueResult{Certificate: leaf, Chain: chain}
	if key != nil {
		res.PrivateKey = key
	}
	return res, nil
}

// order runs one ACME order for the identifiers and finalizes it with
// csrDER, returning the DER certificates the CA sent (leaf first).
func (p *Provider) order(ctx context.Context, dns []string, ips []net.IP, csrDER []byte) ([][]byte, error) {
	ids := acme.DomainIDs(dns...)
	for _, ip := range ips {
		ids = append(ids, acme.IPIDs(ip.String())...)
	}
	var opts []acme.OrderOption
	if p.profile != "" {
		opts = append(opts, acme.WithOrderIssuanceProfile(acme.ProfileName(p.profile)))
	}
	o, err := p.client.AuthorizeOrder(ctx, ids, opts...)
	if err != nil {
		return nil, fmt.Errorf("acme: new order: %w", mapError(err))
	}
	for _, u := range o.AuthzURLs {
		if err := p.authorize(ctx, u); err != nil {
			return nil, err
		}
	}
	if _, err := p.client.WaitOrder(ctx, o.URI); err != nil {
		return nil, fmt.Errorf("acme: order %s: %w", o.URI, mapError(err))
	}
	ders, _, err := p.client.CreateOrderCert(ctx, o.FinalizeURL, csrDER, true)
	if err != nil {
		return nil, fmt.Errorf("acme: finalize order %s: %w", o.URI, mapError(err))
	}
	return ders, nil
}

// authorize completes one authorization with the solver's challenge.
func (p *Provider) authorize(ctx context.Context, url string) error {
	z, err := p.client.GetAuthorization(ctx, url)
	if err != nil {
		return fmt.Errorf("acme: authorization %s: %w", url, mapError(err))
	}
	if z.Status == acme.StatusValid {
		return nil
	}
	i := slices.IndexFunc(z.Challenges, func(c *acme.Challenge) bool { return c.Type == p.solver.ChallengeType() })
	if i < 0 {
		return provider.Unsupported("names", fmt.Sprintf("the CA offers no %s challenge for %s", p.solver.ChallengeType(), z.Identifier.Value))
	}
	withdraw, err := p.solver.Present(ctx, p.client, z.Identifier, z.Challenges[i])
	if err != nil {
		return fmt.Errorf("acme: present %s for %s: %w", p.solver.ChallengeType(), z.Identifier.Value, err)
	}
	defer withdraw()
	if _, err := p.client.Accept(ctx, z.Challenges[i]); err != nil {
		return fmt.Errorf("acme: accept challenge for %s: %w", z.Identifier.Value, mapError(err))
	}
	if _, err := p.client.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("acme: authorization of %s: %w", z.Identifier.Value, mapError(err))
	}
	return nil
}

// checkIssued checks what the CA returned: a leaf for pub and exactly the
// ordered names, signed by one of the configured issuing CAs, in
// Config.Role, not outliving its issuer; it returns the leaf and its
// chain up to the root. A certificate that fails is revoked (it is not
// what was asked for) and an error returned.
func (p *Provider) checkIssued(ctx context.Context, ders [][]byte, pub crypto.PublicKey, dns []string, ips []net.IP) (*x509.Certificate, []*x509.Certificate, error) {
	if len(ders) == 0 {
		return nil, nil, errors.New("acme: the CA returned no certificate")
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, nil, fmt.Errorf("acme: the CA returned a certificate that does not parse: %w", err)
	}
	chain := p.chainOf(leaf)
	if chain == nil {
		// Not ours to revoke with this account's trust: the CA changed
		// its issuing CA, and the configuration must follow.
		return nil, nil, fmt.Errorf("acme: the CA issued from %q, none of the configured CA certificates: update Config.CACertificates", leaf.Issuer)
	}
	issuer := chain[0]
	var problem string
	switch {
	case !publicKeysEqual(pub, leaf.PublicKey):
		problem = "certifies another key than the CSR's"
	case !sameNameSet(leaf, dns, ips):
		problem = fmt.Sprintf("names %v %v, not the ordered %v %v", leaf.DNSNames, leaf.IPAddresses, dns, ips)
	case provider.RoleOf(leaf) != p.role:
		problem = fmt.Sprintf("has the %s role, not the configured %s (Config.Role)", provider.RoleOf(leaf), p.role)
	case leaf.NotAfter.After(issuer.NotAfter):
		problem = "outlives its issuing CA"
	}
	if problem == "" {
		return leaf, chain, nil
	}
	err = fmt.Errorf("acme: the CA issued serial %s, which %s", provider.FormatSerial(leaf.SerialNumber), problem)
	if rerr := p.client.RevokeCert(ctx, nil, leaf.Raw, acme.CRLReasonCessationOfOperation); rerr != nil {
		err = errors.Join(err, fmt.Errorf("acme: revoking it failed: %w", mapError(rerr)))
	}
	return nil, nil, err
}

// generateKey generates the key of a request without a CSR.
func generateKey(alg provider.KeyAlgorithm, size int) (crypto.Signer, error) {
	switch alg {
	case provider.KeyAlgorithmDefault, provider.KeyAlgorithmECDSA:
		var curve elliptic.Curve
		switch size {
		case 0, 256:
			curve = elliptic.P256()
		case 384:
			curve = elliptic.P384()
		default:
			return nil, provider.Unsupported("key size", fmt.Sprintf("ECDSA keys are P-256 or P-384 (ACME CAs certify no other curve), not %d bits", size))
		}
		return ecdsa.GenerateKey(curve, rand.Reader)
	case provider.KeyAlgorithmRSA:
		if size == 0 {
			size = defaultRSAKeySize
		}
		if size < defaultRSAKeySize || size > maxRSAKeySize {
			return nil, &provider.RequestError{Field: "key size", Reason: fmt.Sprintf("RSA keys are %d to %d bits, not %d", defaultRSAKeySize, maxRSAKeySize, size)}
		}
		return rsa.GenerateKey(rand.Reader, size)
	}
	return nil, &provider.RequestError{Field: "key algorithm", Reason: fmt.Sprintf("unknown key algorithm %v", alg)}
}

// normalize lower-cases and de-duplicates the DNS names and de-duplicates
// the IP addresses (IPv4 in 4-byte form).
func normalize(dnsIn []string, ipsIn []net.IP) ([]string, []net.IP) {
	var dns []string
	for _, n := range dnsIn {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	var ips []net.IP
	for _, ip := range ipsIn {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	return dns, ips
}

// sameNames checks that the CSR names exactly the names the request
// vouches for: a CSR name the platform does not vouch for would let a
// host claim another's name, and a vouched name missing from the CSR
// cannot be added by an ACME CA.
func sameNames(csr *x509.CertificateRequest, dns []string, ips []net.IP, cn string) error {
	cdns, cips := normalize(csr.DNSNames, csr.IPAddresses)
	for _, n := range cdns {
		if !slices.Contains(dns, n) {
			return &provider.RequestError{Field: "csr dns", Reason: fmt.Sprintf("the CSR names %q, which the request does not vouch for", n)}
		}
	}
	for _, ip := range cips {
		if !slices.ContainsFunc(ips, ip.Equal) {
			return &provider.RequestError{Field: "csr ip", Reason: fmt.Sprintf("the CSR names %v, which the request does not vouch for", ip)}
		}
	}
	for _, n := range dns {
		if !slices.Contains(cdns, n) {
			return provider.Unsupported("dns", fmt.Sprintf("an ACME CA certifies exactly the CSR's names and cannot add %q: put it in the CSR", n))
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cips, ip.Equal) {
			return provider.Unsupported("ip", fmt.Sprintf("an ACME CA certifies exactly the CSR's names and cannot add %v: put it in the CSR", ip))
		}
	}
	if len(dns)+len(ips) == 0 {
		return &provider.RequestError{Field: "csr", Reason: "names no DNS name or IP address"}
	}
	if c := csr.Subject.CommonName; c != "" && !slices.Contains(dns, strings.ToLower(c)) && !containsIPString(ips, c) {
		return &provider.RequestError{Field: "csr common name", Reason: fmt.Sprintf("%q is none of the vouched names", c)}
	}
	if cn != "" && !strings.EqualFold(cn, csr.Subject.CommonName) {
		return provider.Unsupported("common name", "an ACME CA takes the common name from the CSR: put it there")
	}
	return nil
}

// sameNameSet reports whether c names exactly dns and ips.
func sameNameSet(c *x509.Certificate, dns []string, ips []net.IP) bool {
	cdns, cips := normalize(c.DNSNames, c.IPAddresses)
	if len(cdns) != len(dns) || len(cips) != len(ips) {
		return false
	}
	for _, n := range dns {
		if !slices.Contains(cdns, n) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cips, ip.Equal) {
			return false
		}
	}
	return true
}

func containsIPString(ips []net.IP, s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && slices.ContainsFunc(ips, ip.Equal)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
