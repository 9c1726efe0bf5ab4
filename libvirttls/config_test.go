package libvirttls

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/libvirtconf"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// stock reads a configuration file that Debian 12's libvirt-daemon-system
// 9.0.0-4+deb12u2 installs, copied into testdata unchanged.
func stock(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	assert.Equal(t, string(want), string(got))
}

// goldenConfig is the host of the golden files: host paths, a CRL,
// an allow list, a listen address and migrate_tls_force.
func goldenConfig() *Config {
	return &Config{
		LookupGroup:     fakeGroups,
		ListenAddr:      "192.0.2.10",
		AllowedDNs:      []string{"CN=kvm1.example.org", "CN=kvm2.example.org"},
		MigrateTLSForce: true,
	}
}

func TestGoldenStockFiles(t *testing.T) {
	libvirtdSettings, err := goldenConfig().LibvirtdSettings(true)
	require.NoError(t, err)
	for _, tc := range []struct {
		name     string
		file     string
		settings []libvirtconf.Setting
	}{
		{name: "libvirtd.conf", file: "libvirtd.conf", settings: libvirtdSettings},
		{name: "qemu.conf", file: "qemu.conf", settings: goldenConfig().QEMUSettings()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := stock(t, tc.file)
			got, err := libvirtconf.Edit(src, tc.settings...)
			require.NoError(t, err)
			golden(t, tc.file+".golden", got)
			golden(t, tc.file+".diff.golden", []byte(libvirtconf.UnifiedDiff("/etc/libvirt/"+tc.file, src, got)))

			again, err := libvirtconf.Edit(got, tc.settings...)
			require.NoError(t, err)
			assert.Equal(t, string(got), string(again), "editing twice must give the same bytes")

			// Every setting took effect, and libvirt's first match is it.
			conf, err := libvirtconf.Parse(got)
			require.NoError(t, err)
			for _, s := range tc.settings {
				v, ok := conf.Get(s.Key)
				if assert.True(t, ok, s.Key) {
					assert.True(t, v.Equal(s.Value), "%s = %s, want %s", s.Key, v, s.Value)
				}
			}

			// Only lines of the edited keys changed: every removed line
			// is a (commented) statement of one of them, and there are as
			// many added lines as settings.
			keys := map[string]bool{}
			for _, s := range tc.settings {
				keys[s.Key] = true
			}
			added := 0
			for _, line := range strings.Split(libvirtconf.UnifiedDiff("f", src, got), "\n") {
				switch {
				case strings.HasPrefix(line, "---"), strings.HasPrefix(line, "+++"):
				case strings.HasPrefix(line, "-"):
					key, _, _ := strings.Cut(strings.TrimPrefix(line[1:], "#"), " ")
					assert.True(t, keys[key], "removed line %q is not a statement of an edited key", line)
				case strings.HasPrefix(line, "+"):
					added++
				}
			}
			assert.Equal(t, len(tc.settings), added)
		})
	}
}
