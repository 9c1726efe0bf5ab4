package libvirttls

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvmpki/kvmpki/libvirtconf"
)

// ErrInsecureConfig: libvirtd or QEMU is configured to accept what TLS should
// refuse: an open TCP socket (listen_tcp, libvirtd-tcp.socket,
// auth_tcp="none"), certificate checks turned off
// (tls_no_verify_certificate, tls_no_sanity_certificate,
// *_tls_x509_verify=0) or a tls_priority that weakens TLS.
var ErrInsecureConfig = errors.New("libvirttls: insecure setting")

// insecureLibvirtd lists the settings of libvirtd.conf that undo TLS.
func insecureLibvirtd(conf *libvirtconf.Config) []error {
	var errs []error
	isOne := func(key string) bool {
		v, ok := conf.Get(key)
		n, isInt := v.Int()
		return ok && (!isInt || n != 0)
	}
	if isOne("listen_tcp") {
		errs = append(errs, fmt.Errorf("%w: libvirtd.conf: listen_tcp is on: libvirtd serves plain TCP", ErrInsecureConfig))
	}
	if v, ok := conf.Get("auth_tcp"); ok && v.Equal(libvirtconf.StringValue("none")) {
		errs = append(errs, fmt.Errorf(`%w: libvirtd.conf: auth_tcp = "none" lets anyone reaching the TCP port drive libvirtd`, ErrInsecureConfig))
	}
	if isOne("tls_no_verify_certificate") {
		errs = append(errs, fmt.Errorf("%w: libvirtd.conf: tls_no_verify_certificate is on: libvirtd accepts clients whose certificates fail verification and ignores tls_allowed_dn_list", ErrInsecureConfig))
	}
	if isOne("tls_no_sanity_certificate") {
		errs = append(errs, fmt.Errorf("%w: libvirtd.conf: tls_no_sanity_certificate is on: libvirtd skips the checks of its own certificate", ErrInsecureConfig))
	}
	if err := checkPriorityKey(conf, "libvirtd.conf", "tls_priority"); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// insecureQEMU lists the settings of qemu.conf that undo TLS for the
// services the plan secures (VNC and migration).
func insecureQEMU(conf *libvirtconf.Config) []error {
	var errs []error
	for _, key := range []string{"vnc_tls_x509_verify", "migrate_tls_x509_verify"} {
		if v, ok := conf.Get(key); ok {
			if n, isInt := v.Int(); isInt && n == 0 {
				errs = append(errs, fmt.Errorf("%w: qemu.conf: %s = 0: QEMU accepts clients without a certificate", ErrInsecureConfig, key))
			}
		}
	}
	// libvirt >= 11.6 reads these; older versions ignore them.
	for _, key := range []string{"default_tls_priority", "vnc_tls_priority", "migrate_tls_priority"} {
		if err := checkPriorityKey(conf, "qemu.conf", key); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func checkPriorityKey(conf *libvirtconf.Config, file, key string) error {
	v, ok := conf.Get(key)
	if !ok {
		return nil
	}
	s, isStr := v.Str()
	if !isStr {
		return fmt.Errorf("%w: %s: %s is not a string", ErrInsecureConfig, file, key)
	}
	if err := CheckPriority(s); err != nil {
		return fmt.Errorf("%w: %s: %s: %w", ErrInsecureConfig, file, key, err)
	}
	return nil
}

// Base keywords of a GnuTLS priority string that keep at least
// libvirt's default (NORMAL), and the "%" flags that do not weaken it.
var (
	safePriorityBases = map[string]bool{
		"NORMAL": true, "PFS": true, "SECURE": true, "SECURE128": true, "SECURE192": true,
		"SECURE256": true, "SUITEB128": true, "SUITEB192": true, "PERFORMANCE": true,
	}
	safePriorityFlags = map[string]bool{
		"%SERVER_PRECEDENCE": true, "%SAFE_RENEGOTIATION": true, "%NO_TICKETS": true,
		"%NO_TICKETS_TLS12": true, "%FORCE_ETM": true, "%LATEST_RECORD_VERSION": true,
		"%PROFILE_MEDIUM": true, "%PROFILE_HIGH": true, "%PROFILE_ULTRA": true,
		"%PROFILE_FUTURE": true, "%PROFILE_SUITEB128": true, "%PROFILE_SUITEB192": true,
		"%STATELESS_COMPRESSION": true,
	}
	// Prefixes of items that, added, let in what TLS 1.2+ refuses.
	weakPriorityItems = []string{
		"VERS-SSL3.0", "VERS-TLS1.0", "VERS-TLS1.1", "VERS-ALL", "VERS-TLS-ALL",
		"ANON-", "NULL", "ARCFOUR", "RC4", "DES-CBC", "3DES-CBC", "MD5", "SIGN-RSA-MD5",
		"EXPORT", "RSA-EXPORT", "CTYPE-OPENPGP",
	}
)

// CheckPriority returns an error when the GnuTLS priority string s
// weakens TLS below libvirt's default ("NORMAL"): a base other than
// NORMAL, SECURE*, SUITEB*, PFS, PERFORMANCE or a system keyword
// ("@SYSTEM", "@LIBVIRT,SYSTEM"), such as NONE or LEGACY; an added
// protocol below TLS 1.2 (+VERS-TLS1.0), anonymous or NULL suites, RC4,
// DES, 3DES or MD5; or a "%" flag other than the hardening ones (no
// %NO_EXTENSIONS, %COMPAT, %UNSAFE_RENEGOTIATION, %VERIFY_ALLOW_*,
// %VERIFY_DISABLE_*, %PROFILE_LOW...). Unknown items are refused: a
// string this function cannot vouch for is not called safe.
func CheckPriority(s string) error {
	items := strings.Split(s, ":")
	base := strings.TrimSpace(items[0])
	switch {
	case strings.HasPrefix(base, "@") && base != "@":
		// A system-wide policy (crypto-policies) decides.
	case safePriorityBases[strings.ToUpper(base)]:
	default:
		return fmt.Errorf("priority %q: base %q is not one that keeps a secure floor", s, base)
	}
	for _, item := range items[1:] {
		item = strings.TrimSpace(item)
		up := strings.ToUpper(item)
		switch {
		case item == "":
		case strings.HasPrefix(up, "%"):
			if !safePriorityFlags[up] {
				return fmt.Errorf("priority %q: %s weakens TLS or its certificate checks", s, item)
			}
		case strings.HasPrefix(up, "-") || strings.HasPrefix(up, "!"):
			// Removing algorithms or protocols never lowers the floor.
		default:
			added := strings.TrimPrefix(up, "+")
			if strings.HasPrefix(added, "COMP-") {
				continue // COMP-NULL is "no compression"
			}
			for _, weak := range weakPriorityItems {
				if strings.HasPrefix(added, weak) || strings.Contains(added, "-"+weak) {
					return fmt.Errorf("priority %q: %s enables a protocol or algorithm below TLS 1.2's floor", s, item)
				}
			}
		}
	}
	return nil
}
