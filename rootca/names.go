package rootca

import (
	"fmt"
	"net"
	"strings"

	"github.com/kvmpki/kvmpki/provider"
)

// The names policy decides which DNS names and IP addresses go into a
// certificate.
//
//   - Names come from two sources: the request (IssueRequest.DNSNames,
//     IPAddresses and CommonName), which the platform vouches for, and the
//     CSR (its subject common name and its DNS and IP subject alternative
//     names), which the requester controls.
//   - A CSR's names must be well formed, but only those the request vouches
//     for go into the certificate; the others are left out, so a host
//     cannot obtain a certificate for another host's name. With
//     Options.InsecureAllowCSRNames they all go in, as CloudStack adds a
//     host's addresses on top of whatever its agent's CSR asks for, except
//     names in Options.ReservedDNSNames, which are refused.
//   - A CSR may not ask for e-mail, URI or other name forms.
//   - Every DNS name must pass provider.CheckDNSName: a host name of
//     letters, digits and hyphens (RFC 1123), at most 253 characters,
//     without wildcards, and not an IP literal such as "10.0.0.9" (those
//     belong in IPAddresses); it is lower-cased. An IP address must pass
//     provider.CheckIPAddress: not unspecified, multicast or broadcast.
//   - The subject is the common name alone, which is also added as a DNS
//     name (or IP address), because Go and GnuTLS ignore the CN when SANs
//     are present. The CSR's other subject attributes are dropped.
//   - At most Options.MaxNames names in all; duplicates count once.
type nameSet struct {
	commonName string
	dnsNames   []string
	ips        []net.IP
	seen       map[string]bool
	max        int
}

func newNameSet(max int) *nameSet {
	return &nameSet{seen: make(map[string]bool), max: max}
}

func (s *nameSet) count() int { return len(s.dnsNames) + len(s.ips) }

func (s *nameSet) addDNS(field, name string) error {
	n, err := provider.CheckDNSName(name)
	if err != nil {
		return &provider.RequestError{Field: field, Reason: err.Error()}
	}
	if s.seen[n] {
		return nil
	}
	if s.count() >= s.max {
		return &provider.RequestError{Field: field, Reason: fmt.Sprintf("more than %d names", s.max)}
	}
	s.seen[n] = true
	s.dnsNames = append(s.dnsNames, n)
	return nil
}

func (s *nameSet) addIP(field string, ip net.IP) error {
	key, err := s.key(field, "", ip)
	if err != nil {
		return err
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	if s.seen[key] {
		return nil
	}
	if s.count() >= s.max {
		return &provider.RequestError{Field: field, Reason: fmt.Sprintf("more than %d names", s.max)}
	}
	s.seen[key] = true
	s.ips = append(s.ips, ip)
	return nil
}

// addName adds a name that may be a host name or an IP literal, such as a
// common name.
func (s *nameSet) addName(field, name string) error {
	if ip := net.ParseIP(name); ip != nil {
		return s.addIP(field, ip)
	}
	return s.addDNS(field, name)
}

// key validates a name (a host name or IP literal in name, or, with name
// empty, the IP in ip) and returns the key under which the set records it, without adding
// it.
func (s *nameSet) key(field, name string, ip net.IP) (string, error) {
	if ip == nil && name != "" {
		ip = net.ParseIP(name)
	}
	if ip != nil || name == "" {
		if err := provider.CheckIPAddress(ip); err != nil {
			return "", &provider.RequestError{Field: field, Reason: err.Error()}
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		return "ip:" + string(ip), nil
	}
	n, err := provider.CheckDNSName(name)
	if err != nil {
		return "", &provider.RequestError{Field: field, Reason: err.Error()}
	}
	return n, nil
}

// reserved reports whether name is covered by one of the reserved
// patterns.
func reserved(name string, patterns []string) bool {
	for _, p := range patterns {
		p = strings.ToLower(p)
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(name, "."+suffix) {
				return true
			}
			continue
		}
		if name == p {
			return true
		}
	}
	return false
}
