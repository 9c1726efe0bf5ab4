package libvirttls

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/libvirtconf"
)

func TestAllowedDN(t *testing.T) {
	rdn := func(name pkix.Name) []byte {
		b, err := asn1.Marshal(name.ToRDNSequence())
		require.NoError(t, err)
		return b
	}
	for _, tc := range []struct {
		name    string
		subject []byte
		want    string
		errMsg  string
	}{
		{name: "CN", subject: rdn(pkix.Name{CommonName: "kvm1"}), want: "CN=kvm1"},
		{name: "RDN order, not RFC 4514", subject: rdn(pkix.Name{Organization: []string{"Example"}, CommonName: "kvm1"}), want: "O=Example,CN=kvm1"},
		{name: "empty subject", subject: rdn(pkix.Name{}), errMsg: "empty subject"},
		{name: "comma", subject: rdn(pkix.Name{CommonName: "a,b"}), errMsg: "character ','"},
		{name: "quote", subject: rdn(pkix.Name{CommonName: `a"b`}), errMsg: "character"},
		{name: "glob", subject: rdn(pkix.Name{CommonName: "kvm?"}), errMsg: "character '?'"},
		{name: "leading space", subject: rdn(pkix.Name{CommonName: " kvm"}), errMsg: "leading"},
		{name: "serialNumber", subject: rdn(pkix.Name{SerialNumber: "1", CommonName: "kvm1"}), errMsg: "attribute 2.5.4.5"},
		{name: "garbage", subject: []byte{0x30, 0x03, 0x01}, errMsg: "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AllowedDN(&x509.Certificate{RawSubject: tc.subject})
			if tc.errMsg != "" {
				assert.ErrorIs(t, err, ErrUnsupportedDN)
				assert.ErrorContains(t, err, tc.errMsg)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// FuzzAllowedDN: any subject either renders to a string that is safe in
// tls_allowed_dn_list (writable, no glob) or is refused; no panic.
func FuzzAllowedDN(f *testing.F) {
	for _, name := range []pkix.Name{
		{CommonName: "kvm1.example.org"},
		{Country: []string{"DE"}, Organization: []string{"Example"}, OrganizationalUnit: []string{"Hosts"}, CommonName: "kvm1"},
	} {
		b, err := asn1.Marshal(name.ToRDNSequence())
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, subject []byte) {
		dn, err := AllowedDN(&x509.Certificate{RawSubject: subject})
		if err != nil {
			require.ErrorIs(t, err, ErrUnsupportedDN)
			return
		}
		assert.False(t, strings.ContainsAny(dn, "*?\"'\n\r\x00"), "unsafe DN %q", dn)
		_, err = libvirtconf.StringListValue(dn).Marshal()
		assert.NoError(t, err)
	})
}
