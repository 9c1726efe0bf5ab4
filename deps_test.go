package kvmpki_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// This test is a statement of policy, in the spirit of Go's
// src/go/build/deps_test.go: it fails when a package imports what the
// layering of kvmpki forbids.
//
//	provider                       standard library and internal/pkicore only: the contract
//	provider/providertest          provider (+ testify)
//	rootca, rootca/...             provider and the shared internal packages, never ca
//	ca                             provider and the shared internal packages, never rootca
//	keystore, libvirtconf, rfb     leaves: only the shared internal packages
//	libvirttls                     libvirtconf and the shared internal packages
//	migration                      libvirttls, libvirtconf and the shared internal packages
//	internal/...                   each its own short list below
//	examples/...                   anything; nothing imports them, but an example
//	                               its own subpackages (examples/X imports examples/X/...)
//	internal/peers                 test support: imported by _test.go files only
//
// No package imports "log" (log/slog is allowed), and zlint is for tests
// only.

const module = "github.com/kvmpki/kvmpki"

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Deps         []string
}

// Shared rules live once in internal/ packages that the public packages
// import and re-export (see the brief's "one rule, one place"):
//
//	internal/pkicore      sentinels, key algorithm, x509 error mapping (stdlib only)
//	internal/pemx         PEM parsing of certificates, keys and CRLs
//	internal/revocation   CRL verification and chain revocation checks
//	internal/libvirtdial  the TLS dial a libvirt client makes to libvirtd
//	internal/safefs       atomic writes and symlink-free paths beneath a root
//	internal/ocspx        a provider.OCSPResponseTemplate signed as RFC 6960 (rootca and ca)
var (
	shared        = []string{"internal/pkicore", "internal/pemx", "internal/revocation"}
	sharedLibvirt = append(append([]string(nil), shared...), "internal/libvirtdial", "internal/safefs")
)

// stdlibOnlyInternal are the internal packages provider may import: they
// import only the standard library themselves, which the Deps check of
// provider enforces.
var stdlibOnlyInternal = []string{"internal/pkicore"}

// allowedKvmpki lists, per package prefix, the kvmpki packages its
// non-test code may import. A package not listed may import only its own
// subpackages.
var allowedKvmpki = map[string][]string{
	"provider":              stdlibOnlyInternal,
	"provider/providertest": {"provider"},
	"rootca":                append([]string{"provider", "internal/safefs", "internal/ocspx"}, shared...),
	"rootca/storetest":      {"provider", "rootca"},
	"ca":                    append([]string{"provider", "internal/ocspx"}, shared...),
	"keystore":              append([]string{"internal/safefs"}, shared...),
	"libvirtconf":           nil,
	"libvirttls":            append([]string{"libvirtconf"}, sharedLibvirt...),
	"rfb":                   shared,
	"migration":             append([]string{"libvirttls", "libvirtconf"}, sharedLibvirt...),
	"internal/pkicore":      nil,
	"internal/pemx":         {"internal/pkicore"},
	"internal/revocation":   {"internal/pkicore", "internal/pemx"},
	"internal/libvirtdial":  {"internal/pkicore", "internal/revocation"},
	"internal/safefs":       nil,
	"internal/ocspx":        {"provider"},
	"internal/peers":        nil,
	"internal/testpki":      nil,
	"internal/secret":       nil,
	"internal/dburl":        nil,
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports,Deps", "./...")
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		t.Fatalf("go list: %v\n%s", err, exitErr.Stderr)
	}
	require.NoError(t, err)
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		pkgs = append(pkgs, p)
	}
	require.NotEmpty(t, pkgs)
	return pkgs
}

func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// ruleFor returns the most specific rule key for a package.
func ruleFor(r string) (string, bool) {
	best := ""
	found := false
	for k := range allowedKvmpki {
		if (r == k || strings.HasPrefix(r, k+"/")) && len(k) >= len(best) {
			best, found = k, true
		}
	}
	return best, found
}

func TestDependencyPolicy(t *testing.T) {
	for _, v := range violations(listPackages(t)) {
		t.Error(v)
	}
}

// TestDependencyPolicyCatches feeds made-up packages to the checker, so
// that a checker which lets everything through fails.
func TestDependencyPolicyCatches(t *testing.T) {
	m := func(r string) string { return module + "/" + r }
	tests := []struct {
		name string
		pkg  pkg
		want string
	}{
		{"provider imports a third party", pkg{ImportPath: m("provider"), Deps: []string{"golang.org/x/crypto/ocsp"}}, "may import only the standard library"},
		{"ca imports rootca", pkg{ImportPath: m("ca"), Imports: []string{m("rootca")}}, "layering forbids"},
		{"rootca imports ca", pkg{ImportPath: m("rootca"), Imports: []string{m("ca")}}, "layering forbids"},
		{"leaf imports provider", pkg{ImportPath: m("keystore"), Imports: []string{m("provider")}}, "layering forbids"},
		{"provider imports a non-stdlib internal package", pkg{ImportPath: m("provider"), Imports: []string{m("internal/pemx")}}, "layering forbids"},
		{"provider depends on a third party through internal", pkg{ImportPath: m("provider"), Deps: []string{m("internal/pkicore"), "golang.org/x/sys/unix"}}, "may import only the standard library"},
		{"leaf imports internal/peers", pkg{ImportPath: m("keystore"), Imports: []string{m("internal/peers")}}, "outside its tests"},
		{"libvirttls imports migration", pkg{ImportPath: m("libvirttls"), Imports: []string{m("migration")}}, "layering forbids"},
		{"log", pkg{ImportPath: m("rfb"), Imports: []string{"log"}}, "imports log"},
		{"log in a test", pkg{ImportPath: m("rfb"), XTestImports: []string{"log"}}, "imports log"},
		{"example imported", pkg{ImportPath: m("migration"), TestImports: []string{m("examples/quickstart")}}, "nothing may import an example"},
		{"example imports another example", pkg{ImportPath: m("examples/mgmtserver"), Imports: []string{m("examples/acmeplugin/acme")}}, "nothing may import an example"},
		{"example imports a look-alike", pkg{ImportPath: m("examples/acme"), Imports: []string{m("examples/acmeplugin")}}, "nothing may import an example"},
		{"peers outside tests", pkg{ImportPath: m("rootca"), Imports: []string{m("internal/peers")}}, "outside its tests"},
		{"zlint outside tests", pkg{ImportPath: m("rootca"), Deps: []string{"github.com/zmap/zlint/v3"}}, "zlint is for tests only"},
		{"unknown package", pkg{ImportPath: m("newthing")}, "no layering rule"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := violations([]pkg{tc.pkg})
			require.NotEmpty(t, v)
			assert.Contains(t, strings.Join(v, "\n"), tc.want)
		})
	}
	allowed := []pkg{
		{ImportPath: m("migration"), Imports: []string{m("libvirttls"), "log/slog"}},
		{ImportPath: m("rootca"), Imports: []string{m("provider")}, XTestImports: []string{m("internal/peers"), "github.com/zmap/zlint/v3"}},
		{ImportPath: m("provider"), Imports: []string{m("internal/pkicore")}, Deps: []string{m("internal/pkicore"), "errors"}},
		{ImportPath: m("rfb"), Imports: []string{m("internal/pkicore"), m("internal/pemx")}},
		{ImportPath: m("examples/quickstart"), Imports: []string{m("rootca"), m("provider"), m("internal/peers")}},
		{ImportPath: m("examples/acmeplugin"), Imports: []string{m("examples/acmeplugin/acme")}, TestImports: []string{m("examples/acmeplugin/acme")}},
	}
	assert.Empty(t, violations(allowed))
}

// ownSubpackage reports whether ir lies beneath r's example: an example
// examples/X (or a package under it) may import examples/X/... , its
// own library packages, and nothing of another example.
func ownSubpackage(r, ir string) bool {
	parts := strings.SplitN(r, "/", 3)
	if len(parts) < 2 || parts[0] != "examples" {
		return false
	}
	root := parts[0] + "/" + parts[1]
	return strings.HasPrefix(ir, root+"/")
}

// violations returns one message per forbidden import among pkgs.
func violations(pkgs []pkg) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, p := range pkgs {
		r, ok := rel(p.ImportPath)
		if !ok {
			bad("package outside the module: %s", p.ImportPath)
			continue
		}
		all := append(append(append([]string(nil), p.Imports...), p.TestImports...), p.XTestImports...)
		for _, imp := range all {
			if imp == "log" {
				bad("%s imports log; use a caller-supplied *slog.Logger", r)
			}
			if ir, ok := rel(imp); ok && (ir == "examples" || strings.HasPrefix(ir, "examples/")) && !ownSubpackage(r, ir) {
				bad("%s imports %s: nothing may import an example", r, ir)
			}
		}
		if strings.HasPrefix(r, "examples/") || r == "" {
			continue
		}
		for _, imp := range p.Imports {
			if ir, ok := rel(imp); ok && ir == "internal/peers" {
				bad("%s imports internal/peers outside its tests", r)
			}
		}
		for _, dep := range p.Deps {
			if strings.HasPrefix(dep, "github.com/zmap/") {
				bad("%s depends on %s outside its tests: zlint is for tests only", r, dep)
			}
		}
		if r == "provider" {
			for _, dep := range p.Deps {
				if dr, ok := rel(dep); ok && slices.Contains(stdlibOnlyInternal, dr) {
					continue
				}
				if !isStd(dep) {
					bad("provider depends on %s: it may import only the standard library", dep)
				}
			}
		}
		rule, known := ruleFor(r)
		if !known {
			bad("package %s has no layering rule: add it to allowedKvmpki", r)
			continue
		}
		for _, imp := range p.Imports {
			ir, ok := rel(imp)
			if !ok || ir == rule || strings.HasPrefix(ir, rule+"/") {
				continue
			}
			if !slices.Contains(allowedKvmpki[rule], ir) {
				bad("%s imports %s, which the layering forbids", r, ir)
			}
		}
	}
	return out
}
