package safefs

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// eachResolver runs f once with openat2 and once with the fallback that
// opens one directory at a time, as on a kernel without openat2.
func eachResolver(t *testing.T, f func(t *testing.T)) {
	t.Run("openat2", func(t *testing.T) {
		_, err := unix.Openat2(unix.AT_FDCWD, ".", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC})
		if err == unix.ENOSYS {
			t.Skip("this kernel has no openat2 (Linux < 5.6): only the fallback is tested")
		}
		require.False(t, noOpenat2.Load())
		f(t)
	})
	t.Run("fallback", func(t *testing.T) {
		was := noOpenat2.Load()
		noOpenat2.Store(true)
		t.Cleanup(func() { noOpenat2.Store(was) })
		f(t)
	})
}

// TestOpenat2Used: where the kernel has openat2, openBeneath takes it
// rather than always falling back.
func TestOpenat2Used(t *testing.T) {
	if _, err := unix.Openat2(unix.AT_FDCWD, ".", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC}); err == unix.ENOSYS {
		t.Skip("this kernel has no openat2")
	}
	fd, err, ok := openat2Beneath(unix.AT_FDCWD, "resolve.go", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.True(t, ok, "openat2 answered")
	require.NoError(t, err)
	unix.Close(fd)
}
