package rfb_test

import (
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/kvmpki/kvmpki/rfb"
)

// TestVNCAuthResponse checks known-answer vectors computed independently
// with openssl enc -des-ecb -nopad and the bit-reversed key, for the
// challenge 00 01 ... 0f.
func TestVNCAuthResponse(t *testing.T) {
	t.Parallel()
	var challenge [16]byte
	for i := range challenge {
		challenge[i] = byte(i)
	}
	tests := []struct {
		name, password, want string
	}{
		{"password", "password", "b866924125c8eebb9debc1db61c538e2"},
		{"short", "s3cret", "fc9a2bb8546a63388eb45b530d3a6337"},
		{"empty", "", "491e890de9ace932838a49792f2213f3"},
		{"longer than 8 bytes", "longpassword123", "5931256585fd62106d317e09fc963baf"},
		{"only the first 8 bytes count", "longpass", "5931256585fd62106d317e09fc963baf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := rfb.VNCAuthResponse([]byte(tc.password), challenge)
			assert.Equal(t, tc.want, hex.EncodeToString(got[:]))
		})
	}
}
