package migration

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvmpki/kvmpki/libvirttls"
)

// maxReasons bounds the reasons HostFromStatus puts into Host.Reason,
// which messages show.
const maxReasons = 3

// HostFromStatus describes a host from libvirttls's detection of its
// security state:
//
//   - StateSecured when st.Secured;
//   - StateUnsecured when the host shows no sign of having been secured:
//     no host certificate verified, TLS is not configured (a reason wraps
//     libvirttls.ErrNotConfigured), and every reason is a missing file,
//     missing TLS configuration or an insecure setting
//     (libvirttls.ErrCredentialsMissing, ErrNotConfigured,
//     ErrInsecureConfig);
//   - StateFailing otherwise: a secured host whose check failed (invalid,
//     expired or revoked credentials, a failed dial, or TLS configured
//     with files missing), which NewPlan refuses whatever the insecure
//     options say;
//   - StateUnknown for a nil st, which NewPlan refuses too.
//
// Host.Reason holds st's first reasons; the certificate it found becomes
// Host.Certificate, from which NewPlan picks the TLS destination name.
func HostFromStatus(name, address string, st *libvirttls.Status) Host {
	h := Host{Name: name, Address: address}
	if st == nil {
		return h
	}
	h.Certificate = st.Certificate
	if st.Secured {
		h.State = StateSecured
		return h
	}
	h.State = StateFailing
	if neverSecured(st) {
		h.State = StateUnsecured
	}
	reasons := make([]string, 0, maxReasons+1)
	for i, r := range st.Reasons {
		if i == maxReasons {
			reasons = append(reasons, fmt.Sprintf("and %d more", len(st.Reasons)-maxReasons))
			break
		}
		reasons = append(reasons, strings.TrimPrefix(r.Error(), "libvirttls: "))
	}
	h.Reason = strings.Join(reasons, "; ")
	return h
}

// neverSecured reports whether an unsecured st shows no sign of TLS:
// no certificate, TLS not configured, and nothing but missing files,
// missing configuration and insecure settings among its reasons.
func neverSecured(st *libvirttls.Status) bool {
	if st.Certificate != nil || len(st.Reasons) == 0 {
		return false
	}
	notConfigured := false
	for _, r := range st.Reasons {
		switch {
		case errors.Is(r, libvirttls.ErrNotConfigured):
			notConfigured = true
		case errors.Is(r, libvirttls.ErrCredentialsMissing), errors.Is(r, libvirttls.ErrInsecureConfig):
		default:
			return false
		}
	}
	return notConfigured
}
