package migration

import (
	"fmt"
	"strings"

	"github.com/kvmpki/kvmpki/libvirttls"
)

// maxReasons bounds the reasons HostFromStatus puts into Host.Reason,
// which messages show.
const maxReasons = 3

// HostFromStatus describes a host from libvirttls's detection of its
// security state: StateSecured when st.Secured, else StateUnsecured with
// st's first reasons; the certificate it found becomes Host.Certificate, from
// which NewPlan picks the TLS destination name. A nil st gives
// StateUnknown, which NewPlan refuses.
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
	h.State = StateUnsecured
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
