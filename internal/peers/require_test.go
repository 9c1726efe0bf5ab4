package peers

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

// fakeTB records Skipf and Fatalf instead of acting on them.
type fakeTB struct {
	testing.TB
	skipped, fatal string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// runFake runs fn with a fakeTB on its own goroutine, so that Goexit ends
// only fn.
func runFake(t *testing.T, fn func(testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

func TestRequire(t *testing.T) {
	tests := []struct {
		name      string
		bins      []string
		emptyPath bool
		interop   string
		wantSkip  string
		wantFatal string
	}{
		{name: "present", bins: []string{"sh"}},
		{name: "no binaries", bins: nil},
		{
			name:     "unknown binary skips",
			bins:     []string{"sh", "kvmpki-no-such-binary"},
			wantSkip: "kvmpki-no-such-binary not found in PATH (Debian package unknown)",
		},
		{
			name:      "known binary names its package",
			bins:      []string{"certtool"},
			emptyPath: true,
			wantSkip:  "certtool not found in PATH (Debian package gnutls-bin)",
		},
		{
			name:      "require turns skip into failure",
			bins:      []string{"qemu-system-x86_64"},
			emptyPath: true,
			interop:   "require",
			wantFatal: "qemu-system-x86_64 not found in PATH (Debian package qemu-system-x86); KVMPKI_INTEROP=require",
		},
		{
			name:      "other values still skip",
			bins:      []string{"virsh"},
			emptyPath: true,
			interop:   "1",
			wantSkip:  "virsh not found in PATH (Debian package libvirt-clients)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(InteropEnv, tc.interop)
			if tc.emptyPath {
				t.Setenv("PATH", t.TempDir())
			}
			f := runFake(t, func(tb testing.TB) { Require(tb, tc.bins...) })
			if tc.wantSkip == "" {
				assert.Empty(t, f.skipped)
			} else {
				assert.Contains(t, f.skipped, tc.wantSkip)
				assert.Contains(t, f.skipped, "peers: ")
			}
			if tc.wantFatal == "" {
				assert.Empty(t, f.fatal)
			} else {
				assert.Contains(t, f.fatal, tc.wantFatal)
			}
		})
	}
}
