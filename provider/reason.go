package provider

import (
	"fmt"
	"strings"
)

// RevocationReason is an RFC 5280 CRLReason code (section 5.3.1).
type RevocationReason int

// The RFC 5280 reason codes. Value 7 is not used.
const (
	ReasonUnspecified          RevocationReason = 0
	ReasonKeyCompromise        RevocationReason = 1
	ReasonCACompromise         RevocationReason = 2
	ReasonAffiliationChanged   RevocationReason = 3
	ReasonSuperseded           RevocationReason = 4
	ReasonCessationOfOperation RevocationReason = 5
	ReasonCertificateHold      RevocationReason = 6
	ReasonRemoveFromCRL        RevocationReason = 8
	ReasonPrivilegeWithdrawn   RevocationReason = 9
	ReasonAACompromise         RevocationReason = 10
)

var reasonNames = map[RevocationReason]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonCACompromise:         "cACompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonCertificateHold:      "certificateHold",
	ReasonRemoveFromCRL:        "removeFromCRL",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
	ReasonAACompromise:         "aACompromise",
}

// String returns the RFC 5280 ASN.1 name of the reason, such as
// "keyCompromise".
func (r RevocationReason) String() string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return fmt.Sprintf("RevocationReason(%d)", int(r))
}

// Valid reports whether r is a defined RFC 5280 reason code.
func (r RevocationReason) Valid() bool {
	_, ok := reasonNames[r]
	return ok
}

// ParseRevocationReason parses an RFC 5280 reason name ("keyCompromise").
// Matching ignores case, so "keycompromise" and OpenSSL's
// "keyCompromise" spellings both work.
func ParseRevocationReason(name string) (RevocationReason, error) {
	for r, n := range reasonNames {
		if strings.EqualFold(n, name) {
			return r, nil
		}
	}
	return 0, fmt.Errorf("provider: unknown revocation reason %q", name)
}
