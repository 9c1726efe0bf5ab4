package migration_test

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/migration"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want migration.URI
	}{
		{"IPv4 default port", "qemu+tls://10.0.0.2/system",
			migration.URI{Driver: "qemu", Transport: "tls", Host: "10.0.0.2", Path: "/system"}},
		{"host name and port", "qemu+tcp://kvm2.example.org:16509/system",
			migration.URI{Driver: "qemu", Transport: "tcp", Host: "kvm2.example.org", Port: 16509, Path: "/system"}},
		{"IPv6 with port and pkipath", "qemu+tls://[2001:db8::2]:26515/system?pkipath=/etc/pki/kvm%20pki",
			migration.URI{Driver: "qemu", Transport: "tls", Host: "2001:db8::2", Port: 26515, Path: "/system",
				Params: []migration.Param{{Name: "pkipath", Value: "/etc/pki/kvm pki"}}}},
		{"IPv6 zone", "qemu+tls://[fe80::2%25eth0]/system",
			migration.URI{Driver: "qemu", Transport: "tls", Host: "fe80::2%eth0", Path: "/system"}},
		{"test driver", "test+tls://localhost:26514/default",
			migration.URI{Driver: "test", Transport: "tls", Host: "localhost", Port: 26514, Path: "/default"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := migration.ParseURI(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, *u)
			assert.Equal(t, tc.in, u.String())
		})
	}
	u, err := migration.ParseURI("qemu+tls://kvm2/system?pkipath=/a&pkipath=/b")
	require.NoError(t, err)
	v, ok := u.Param("pkipath")
	assert.True(t, ok)
	assert.Equal(t, "/b", v, "the last value wins, as in libvirt")
	_, ok = u.Param("no_verify")
	assert.False(t, ok)
}

func TestParseURIRefuses(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no scheme", "kvm2:16514", "no scheme://"},
		{"local URI", "qemu:///system", "host: empty"},
		{"unbracketed IPv6", "qemu+tls://::1/system", "host: empty"},
		{"unclosed bracket", "qemu+tls://[2001:db8::2/system", "unclosed ["},
		{"brackets around IPv4", "qemu+tls://[1.2.3.4]/system", "not an IPv6 address"},
		{"user info", "qemu+tls://root@kvm2/system", "user information"},
		{"fragment", "qemu+tls://kvm2/system#x", "fragments"},
		{"port 0", "qemu+tls://kvm2:0/system", "bad port"},
		{"leading zero port", "qemu+tls://kvm2:016514/system", "bad port"},
		{"empty port", "qemu+tls://kvm2:/system", "bad port"},
		{"unknown transport", "qemu+http://kvm2/system", "unknown transport"},
		{"NUL in a value", "qemu+tls://kvm2/system?pkipath=%00", "bad % escape"},
		{"truncated escape", "qemu+tls://kvm2/system?pkipath=%2", "truncated"},
		{"bad zone", "qemu+tls://[fe80::1%25a%2Fb]/system", "bad IPv6 zone"},
		{"too long", "qemu+tls://kvm2/" + strings.Repeat("a", 5000), "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := migration.ParseURI(tc.in)
			require.Error(t, err)
			assert.Nil(t, u)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "migration: "))
		})
	}
}

// readLines returns the lines of a testdata file.
func readLines(t testing.TB, name string) []string {
	t.Helper()
	fh, err := os.Open(name)
	require.NoError(t, err)
	defer fh.Close()
	var lines []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			lines = append(lines, line)
		}
	}
	require.NoError(t, sc.Err())
	return lines
}

// FuzzParseURI: any input is refused with a migration error, or parses
// to a URI that renders to a string parsing back to the same URI.
func FuzzParseURI(f *testing.F) {
	for _, s := range readLines(f, "testdata/uris.txt") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := migration.ParseURI(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "migration: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		again, err := migration.ParseURI(u.String())
		if err != nil {
			t.Fatalf("%q parsed, but its rendering %q does not: %v", s, u.String(), err)
		}
		if again.String() != u.String() || again.Host != u.Host || again.Port != u.Port || len(again.Params) != len(u.Params) {
			t.Fatalf("round trip changed %q: %#v != %#v", s, again, u)
		}
		for i := range u.Params {
			if u.Params[i] != again.Params[i] {
				t.Fatalf("round trip changed parameter %d of %q", i, s)
			}
		}
	})
}
