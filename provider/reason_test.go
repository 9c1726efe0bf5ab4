package provider_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/provider"
)

// rfc5280Reasons lists every CRLReason of RFC 5280 section 5.3.1 with its
// ASN.1 name.
var rfc5280Reasons = []struct {
	name   string
	reason provider.RevocationReason
	code   int
}{
	{name: "unspecified", reason: provider.ReasonUnspecified, code: 0},
	{name: "keyCompromise", reason: provider.ReasonKeyCompromise, code: 1},
	{name: "cACompromise", reason: provider.ReasonCACompromise, code: 2},
	{name: "affiliationChanged", reason: provider.ReasonAffiliationChanged, code: 3},
	{name: "superseded", reason: provider.ReasonSuperseded, code: 4},
	{name: "cessationOfOperation", reason: provider.ReasonCessationOfOperation, code: 5},
	{name: "certificateHold", reason: provider.ReasonCertificateHold, code: 6},
	{name: "removeFromCRL", reason: provider.ReasonRemoveFromCRL, code: 8},
	{name: "privilegeWithdrawn", reason: provider.ReasonPrivilegeWithdrawn, code: 9},
	{name: "aACompromise", reason: provider.ReasonAACompromise, code: 10},
}

func TestRevocationReasonRFC5280(t *testing.T) {
	for _, tc := range rfc5280Reasons {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.code, int(tc.reason), "code")
			assert.Equal(t, tc.name, tc.reason.String())
			assert.True(t, tc.reason.Valid())
			for _, spelling := range []string{tc.name, strings.ToLower(tc.name), strings.ToUpper(tc.name)} {
				got, err := provider.ParseRevocationReason(spelling)
				require.NoError(t, err, spelling)
				assert.Equal(t, tc.reason, got, spelling)
			}
		})
	}
}

func TestRevocationReasonInvalid(t *testing.T) {
	tests := []struct {
		name   string
		reason provider.RevocationReason
		want   string
	}{
		{name: "unused code 7", reason: 7, want: "RevocationReason(7)"},
		{name: "beyond aACompromise", reason: 11, want: "RevocationReason(11)"},
		{name: "negative", reason: -1, want: "RevocationReason(-1)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.reason.String())
			assert.False(t, tc.reason.Valid())
		})
	}
}

func TestParseRevocationReasonUnknown(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{name: "empty", input: ""},
		{name: "number", input: "1"},
		{name: "padded", input: " keyCompromise"},
		{name: "openssl crl_reason alias", input: "key_compromise"},
		{name: "go syntax", input: "RevocationReason(7)"},
		{name: "other", input: "lost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provider.ParseRevocationReason(tc.input)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "provider: unknown revocation reason")
		})
	}
}
