package libvirtconf

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
)

// virconfCases are configuration snippets on which Parse must agree
// with libvirt's own parser (virconf), accepting or refusing alike.
var virconfCases = []struct {
	name string
	src  string
}{
	{"integer", "a = 1\n"},
	{"negative", "a = -1\n"},
	{"plus sign", "a = +1\n"},
	{"largest unsigned", "a = 18446744073709551615\n"},
	{"unsigned overflow", "a = 18446744073709551616\n"},
	{"smallest signed", "a = -9223372036854775808\n"},
	{"signed overflow", "a = -9223372036854775809\n"},
	{"single quotes", "a = 'x \"y\"'\n"},
	{"double quotes", "a = \"x\"\n"},
	{"triple quotes", "a = \"\"\"x\ny\"\"\"\n"},
	{"list over lines", "a = [\n  \"x\",\n  \"y\",\n]\n"},
	{"nested list", "a = [[1], 2]\n"},
	{"empty list", "a = [ ]\n"},
	{"semicolons", "a = 1; b = 2;\n"},
	{"trailing comment", "a = 1 # one\n"},
	{"CRLF", "# c\r\na = 1\r\n"},
	{"no final newline", "a = 1"},
	{"empty", ""},
	{"comments only", "# a\n  # b\n"},
	{"underscore and digits", "a_1 = 1\n"},
	{"no equals", "a 1\n"},
	{"no value", "a =\n"},
	{"bare word", "a = yes\n"},
	{"unterminated", "a = \"x\n"},
	{"open list", "a = [1,\n"},
	{"two values", "a = 1 2\n"},
	{"digit first", "1a = 1\n"},
	{"underscore first", "_a = 1\n"},
	{"dotted name", "a.b = 1\n"},
	{"dash in name", "a-b = 1\n"},
	{"comment in list", "a = [1, # one\n2]\n"},
	{"sign only", "a = -\n"},
	{"value on next line", "a =\n1\n"},
	{"double comma", "a = [1,,2]\n"},
	{"leading comma", "a = [,1]\n"},
}

// TestParserAgreesWithLibvirt runs each snippet through libvirt's parser:
// virsh, as an unprivileged user, reads $XDG_CONFIG_HOME/libvirt/libvirt.conf
// before connecting and fails on a syntax error.
func TestParserAgreesWithLibvirt(t *testing.T) {
	t.Parallel()
	peers.Require(t, "virsh")
	var prefix []string
	if os.Geteuid() == 0 {
		// root reads /etc/libvirt/libvirt.conf instead.
		if _, err := exec.LookPath("runuser"); err != nil {
			t.Skip("runuser not found; needed to run virsh unprivileged")
		}
		prefix = []string{"runuser", "-u", "nobody", "--"}
	}
	for _, tc := range virconfCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, err := os.MkdirTemp("", "kvmpki-virconf-")
			require.NoError(t, err)
			t.Cleanup(func() { _ = os.RemoveAll(dir) })
			require.NoError(t, os.Mkdir(filepath.Join(dir, "libvirt"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "libvirt", "libvirt.conf"), []byte(tc.src), 0o644))
			require.NoError(t, os.Chmod(dir, 0o777))

			args := append(append([]string{}, prefix...), "env", "HOME="+dir, "XDG_CONFIG_HOME="+dir,
				"XDG_CACHE_HOME="+dir, "XDG_RUNTIME_DIR="+dir, "virsh", "-c", "test:///default", "uri")
			out, err := exec.CommandContext(t.Context(), args[0], args[1:]...).CombinedOutput()
			libvirtAccepts := err == nil
			if !libvirtAccepts {
				require.Contains(t, string(out), "syntax error", "virsh failed for another reason: %s", out)
			}
			_, ourErr := Parse([]byte(tc.src))
			assert.Equal(t, libvirtAccepts, ourErr == nil, "libvirt: %s; Parse: %v", strings.TrimSpace(string(out)), ourErr)
		})
	}
}
