package pkicore

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseKeyAlgorithm(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    KeyAlgorithm
		wantErr bool
	}{
		{name: "rsa", in: "rsa", want: KeyAlgorithmRSA},
		{name: "upper ecdsa", in: "ECDSA", want: KeyAlgorithmECDSA},
		{name: "ec alias", in: "ec", want: KeyAlgorithmECDSA},
		{name: "empty is default", in: "", want: KeyAlgorithmDefault},
		{name: "default", in: "default", want: KeyAlgorithmDefault},
		{name: "unknown", in: "dsa", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKeyAlgorithm(tc.in)
			if tc.wantErr {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.in)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestKeyAlgorithmStringRoundTrip(t *testing.T) {
	for _, a := range []KeyAlgorithm{KeyAlgorithmDefault, KeyAlgorithmRSA, KeyAlgorithmECDSA} {
		got, err := ParseKeyAlgorithm(a.String())
		require.NoError(t, err)
		assert.Equal(t, a, got)
	}
	assert.Equal(t, "KeyAlgorithm(9)", KeyAlgorithm(9).String())
}
