package ca

import (
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestShellQuote: whatever a name or path holds, the remote shell sees
// exactly one argument with exactly those bytes (sh here plays the
// host's login shell).
func TestShellQuote(t *testing.T) {
	tests := []struct{ name, in string }{
		{"plain", "kvm1.example.org,kvm1"},
		{"empty", ""},
		{"space", "a b"},
		{"single quote", "it's"},
		{"command substitution", "$(touch /tmp/pwned)`id`"},
		{"separators", "a; rm -rf / & b | c > d"},
		{"newline", "a\nb"},
		{"glob", "*"},
		{"dollar", "$HOME"},
		{"leading dash", "-n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command("sh", "-c", `printf '%s|' `+shellQuote(tc.in)).Output()
			require.NoError(t, err)
			assert.Equal(t, tc.in+"|", string(out))
		})
	}
}

// TestSSHHostCommand: the remote command line is the program and its
// quoted arguments, behind "sudo -n --" with Sudo, and runs as one
// argument vector in sh.
func TestSSHHostCommand(t *testing.T) {
	tests := []struct {
		name string
		sudo bool
		want string
	}{
		{"as the user", false, `/opt/bin/keystore-setup -dns 'a b' '$(x)'`},
		{"through sudo", true, `sudo -n -- /opt/bin/keystore-setup -dns 'a b' '$(x)'`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &SSHHost{cfg: SSHConfig{Sudo: tc.sudo}}
			assert.Equal(t, tc.want, h.command("/opt/bin/keystore-setup", "-dns", "a b", "$(x)"))
		})
	}
}
