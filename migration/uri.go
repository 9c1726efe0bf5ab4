package migration

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxURILen bounds the libvirt URIs ParseURI accepts.
const maxURILen = 4096

// URI is a libvirt connection URI with a remote host, such as
// "qemu+tls://[2001:db8::2]:16514/system?pkipath=/etc/pki/kvmpki", in the
// parts a migration needs.
type URI struct {
	// Driver is the hypervisor driver: "qemu", "test", ...
	Driver string
	// Transport is the remote transport: "tls", "tcp", "ssh",
	// "libssh2", "libssh" or "unix"; "" means libvirt's default, tls.
	Transport string
	// Host is a DNS name or an IP address; IPv6 without brackets, a zone
	// after "%".
	Host string
	// Port is the TCP port, or 0 for the transport's default.
	Port int
	// Path is the driver path, e.g. "/system".
	Path string
	// Params are the query parameters in order, values decoded.
	Params []Param
}

var uriTransports = map[string]bool{"": true, "tls": true, "tcp": true, "ssh": true, "libssh2": true, "libssh": true, "unix": true}

// ParseURI parses a libvirt connection URI naming a remote host. It
// refuses user information, fragments, and anything libvirt would read
// differently than this package writes it.
func ParseURI(s string) (*URI, error) {
	if len(s) > maxURILen {
		return nil, fmt.Errorf("migration: URI of %d bytes is longer than %d", len(s), maxURILen)
	}
	fail := func(why string) (*URI, error) {
		return nil, fmt.Errorf("migration: URI %q: %s", s, why)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return fail("no scheme://")
	}
	var u URI
	u.Driver, u.Transport, _ = strings.Cut(scheme, "+")
	if !isToken(u.Driver) {
		return fail("bad driver name")
	}
	if !uriTransports[u.Transport] {
		return fail("unknown transport " + strconv.Quote(u.Transport))
	}
	if strings.ContainsAny(rest, "#@\\ ") || strings.ContainsFunc(rest, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fail("user information, fragments, spaces and control characters are not supported")
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, rest := rest[:end], rest[end:]
	host, port, err := splitAuthority(authority)
	if err != nil {
		return fail(err.Error())
	}
	u.Host, u.Port = host, port
	path, query, hasQuery := strings.Cut(rest, "?")
	for i := 0; i < len(path); i++ {
		if c := path[i]; !isTokenByte(c) && c != '/' && c != '.' {
			return fail("bad path")
		}
	}
	u.Path = path
	if hasQuery {
		for field := range strings.SplitSeq(query, "&") {
			name, value, _ := strings.Cut(field, "=")
			if !isToken(name) {
				return fail("bad parameter name")
			}
			v, err := unescape(value)
			if err != nil {
				return fail(err.Error())
			}
			u.Params = append(u.Params, Param{Name: name, Value: v})
		}
	}
	// What parses must render to a URI that parses again: escaping can
	// triple a value's length.
	if n := len(u.String()); n > maxURILen {
		return fail(fmt.Sprintf("renders to %d bytes, longer than %d", n, maxURILen))
	}
	return &u, nil
}

// splitAuthority splits "host", "host:port", "[v6]" or "[v6]:port".
func splitAuthority(a string) (host string, port int, err error) {
	hostPart, portPart := a, ""
	if strings.HasPrefix(a, "[") {
		i := strings.IndexByte(a, ']')
		if i < 0 {
			return "", 0, errors.New("unclosed [")
		}
		hostPart, portPart = a[1:i], a[i+1:]
		if portPart != "" && !strings.HasPrefix(portPart, ":") {
			return "", 0, errors.New("junk after ]")
		}
		portPart = strings.TrimPrefix(portPart, ":")
		if hostPart, err = unescape(hostPart); err != nil {
			return "", 0, err
		}
		if !strings.Contains(hostPart, ":") {
			return "", 0, errors.New("brackets around something that is not an IPv6 address")
		}
	} else if i := strings.IndexByte(a, ':'); i >= 0 {
		hostPart, portPart = a[:i], a[i+1:]
	}
	if err := checkHost(hostPart); err != nil {
		return "", 0, fmt.Errorf("host: %v", err)
	}
	if portPart != "" || strings.HasSuffix(a, ":") {
		port, err = strconv.Atoi(portPart)
		if err != nil || port < 1 || port > 65535 || strconv.Itoa(port) != portPart {
			return "", 0, fmt.Errorf("bad port %q", portPart)
		}
	}
	return hostPart, port, nil
}

// String renders u; ParseURI(u.String()) gives u back.
func (u *URI) String() string {
	var b strings.Builder
	b.WriteString(u.Driver)
	if u.Transport != "" {
		b.WriteString("+" + u.Transport)
	}
	b.WriteString("://" + hostPort(u.Host, u.Port) + u.Path)
	for i, p := range u.Params {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(p.Name + "=" + escapeQueryValue(p.Value))
	}
	return b.String()
}

// Param returns the value of the last parameter named name, and whether
// there is one.
func (u *URI) Param(name string) (string, bool) {
	for i := len(u.Params) - 1; i >= 0; i-- {
		if u.Params[i].Name == name {
			return u.Params[i].Value, true
		}
	}
	return "", false
}

func isToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// unescape decodes %XX escapes; a NUL or a lone "%" is refused.
func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated % escape")
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil || v == 0 {
			return "", errors.New("bad % escape")
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}
