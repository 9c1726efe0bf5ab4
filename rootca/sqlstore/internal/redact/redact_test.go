package redact

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLeaks(t *testing.T) {
	tests := []struct {
		name, msg, secret string
		want              bool
	}{
		{name: "whole password", msg: `connect "u:Secr3tTailRest@db"`, secret: "Secr3tTailRest", want: true},
		{name: "tail taken for a host", msg: `lookup Tail: no such host`, secret: "Secr3t@Tail/Rest", want: true},
		{name: "short password whole", msg: "auth failed for abc", secret: "abc", want: true},
		{name: "three-byte piece by chance", msg: `relation "certificates" already exists`, secret: "x9QeadZk27pLm", want: false},
		{name: "unrelated", msg: "connection refused", secret: "x9QeadZk27pLm", want: false},
		{name: "no secret", msg: "anything", secret: "", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Leaks(tc.msg, tc.secret))
		})
	}
}
