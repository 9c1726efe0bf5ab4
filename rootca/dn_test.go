package rootca_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rootca"
)

func TestParseDN(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string // pkix.Name.String of the result (RFC 4514, last RDN first)
		cn      string
		wantErr string
	}{
		{name: "cloudstack default", in: "CN=ca.cloudstack.apache.org", want: "CN=ca.cloudstack.apache.org", cn: "ca.cloudstack.apache.org"},
		{name: "two RDNs keep order", in: "CN=kvm CA,O=Example,C=DE", want: "CN=kvm CA,O=Example,C=DE", cn: "kvm CA"},
		{name: "lower-case types and spaces", in: " cn = Root , o = Org ", want: "CN=Root,O=Org", cn: "Root"},
		{name: "escaped comma", in: `CN=a\,b,O=x`, want: `CN=a\,b,O=x`, cn: "a,b"},
		{name: "hex escape", in: `CN=caf\C3\A9`, want: "CN=café", cn: "café"},
		{name: "empty", in: "", wantErr: "empty DN"},
		{name: "no equals", in: "CN", wantErr: "lacks '='"},
		{name: "unknown type", in: "XX=1", wantErr: "unknown attribute type"},
		{name: "empty value", in: "CN=", wantErr: "empty CN value"},
		{name: "bad country", in: "C=cloudstack", wantErr: "two-letter"},
		{name: "multi-valued", in: "CN=a+O=b", wantErr: "multi-valued"},
		{name: "lone backslash", in: `CN=a\`, wantErr: "backslash"},
		{name: "NUL byte", in: "CN=a\x00b", wantErr: "control character"},
		{name: "escaped NUL", in: `CN=a\00b`, wantErr: "control character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rootca.ParseDN(tc.in)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.Contains(t, err.Error(), "rootca: ")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got.String())
			assert.Equal(t, tc.cn, got.CommonName)
			// The encoding holds exactly the parsed RDNs, in order.
			assert.Equal(t, len(got.ExtraNames), len(got.ToRDNSequence()))
		})
	}
}

func FuzzParseDN(f *testing.F) {
	for _, s := range []string{"CN=ca.cloudstack.apache.org", `CN=a\,b,O=x,C=DE`, `CN=caf\C3\A9`, "cn=x+o=y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := rootca.ParseDN(s)
		if err != nil {
			return
		}
		// An accepted DN must round-trip through its RFC 4514 form.
		again, err := rootca.ParseDN(name.String())
		require.NoError(t, err, "re-parse of %q (from %q)", name.String(), s)
		assert.Equal(t, name.String(), again.String())
	})
}
