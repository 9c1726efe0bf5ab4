package peers

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// InteropEnv is the environment variable that turns skips into failures.
// With KVMPKI_INTEROP=require, a missing peer binary fails the test instead
// of skipping it, so that CI cannot pass without having run the interop
// tests.
const InteropEnv = "KVMPKI_INTEROP"

// debianPackages maps the binaries this package runs to the Debian 12
// package that provides them, for the skip message.
var debianPackages = map[string]string{
	"openssl":            "openssl",
	"certtool":           "gnutls-bin",
	"libvirtd":           "libvirt-daemon",
	"virsh":              "libvirt-clients",
	"qemu-system-x86_64": "qemu-system-x86",
	"java":               "default-jre-headless",
	"keytool":            "default-jre-headless",
	"virt-admin":         "libvirt-clients",
	"virt-pki-query-dn":  "libvirt-clients",
	"unshare":            "util-linux",
	"runuser":            "util-linux",
	"Xtigervnc":          "tigervnc-standalone-server",
	"vncpasswd":          "tigervnc-tools",
	"gvnccapture":        "gvncviewer",
	"curl":               "curl",
	"sshd":               "openssh-server",
	"pebble":             "pebble",
	"chromium":           "chromium",
}

// Require skips t unless every binary in bins is on PATH. The skip message
// names the missing binary and the Debian package that provides it. When
// the environment variable KVMPKI_INTEROP is "require", Require fails the
// test instead of skipping it.
//
// Every helper of this package calls Require for the binaries it runs, so
// tests only need it to skip early, before minting certificates.
func Require(t testing.TB, bins ...string) {
	t.Helper()
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err == nil {
			continue
		}
		pkg, ok := debianPackages[bin]
		if !ok {
			pkg = "unknown"
		}
		unavailable(t, bin+" not found in PATH (Debian package "+pkg+")")
	}
}

// Unavailable skips t or, under KVMPKI_INTEROP=require, fails it because
// a peer that is not a binary on PATH (a JavaScript bundle, a kernel
// feature) cannot run here; why names what is missing and where it comes
// from.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	unavailable(t, why)
}

// unavailable skips or, under KVMPKI_INTEROP=require, fails t because a
// peer cannot run here.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(InteropEnv) == "require" {
		t.Fatalf("peers: %s; %s=require forbids skipping", why, InteropEnv)
	}
	t.Skipf("peers: %s; skipping interop test (set %s=require to fail instead)", why, InteropEnv)
}

// javaSourceLauncher caches whether the java on PATH can run single-file
// source programs (java File.java), which needs the jdk.compiler module.
var javaSourceLauncher = sync.OnceValue(func() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "java", "--list-modules").Output()
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "jdk.compiler@") {
			return true
		}
	}
	return false
})

// requireJava is Require for the Java helpers: it also checks that java
// can launch a source file.
func requireJava(t testing.TB) {
	t.Helper()
	Require(t, "java")
	if !javaSourceLauncher() {
		unavailable(t, "java lacks the jdk.compiler module needed by the single-file source launcher (Debian package default-jdk-headless)")
	}
}
