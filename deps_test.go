package kvmpki_test

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// This test is a statement of policy, in the spirit of Go's
// src/go/build/deps_test.go: it fails when a package imports what the
// layering of kvmpki forbids.
//
//	provider                       standard library only: the contract
//	provider/providertest          provider (+ testify)
//	rootca                         provider, never ca
//	ca                             provider only, never rootca
//	keystore, libvirttls, rfb      leaves: no other kvmpki package
//	migration                      libvirttls only
//	examples/...                   anything; nothing imports them
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

// allowedKvmpki lists, per package prefix, the kvmpki packages its
// non-test code may import. A package not listed may import only its own
// subpackages.
var allowedKvmpki = map[string][]string{
	"provider":              nil,
	"provider/providertest": {"provider"},
	"rootca":                {"provider"},
	"rootca/storetest":      {"provider", "rootca"},
	"ca":                    {"provider"},
	"keystore":              nil,
	"libvirttls":            nil,
	"rfb":                   nil,
	"migration":             {"libvirttls"},
	"internal/peers":        nil,
	"internal/testpki":      nil,
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
	for _, p := range listPackages(t) {
		r, ok := rel(p.ImportPath)
		require.True(t, ok, "package outside the module: %s", p.ImportPath)
		t.Run(p.ImportPath, func(t *testing.T) {
			all := append(append(append([]string(nil), p.Imports...), p.TestImports...), p.XTestImports...)
			for _, imp := range all {
				if imp == "log" {
					t.Errorf("%s imports log; use a caller-supplied *slog.Logger", r)
				}
				if ir, ok := rel(imp); ok && (ir == "examples" || strings.HasPrefix(ir, "examples/")) {
					t.Errorf("%s imports %s: nothing may import an example", r, ir)
				}
			}
			if strings.HasPrefix(r, "examples/") || r == "" {
				return
			}
			for _, imp := range p.Imports {
				ir, ok := rel(imp)
				if !ok {
					continue
				}
				if ir == "internal/peers" {
					t.Errorf("%s imports internal/peers outside its tests", r)
				}
			}
			for _, dep := range p.Deps {
				if strings.HasPrefix(dep, "github.com/zmap/") {
					t.Errorf("%s depends on %s outside its tests: zlint is for tests only", r, dep)
				}
			}
			if r == "provider" {
				for _, dep := range p.Deps {
					if !isStd(dep) {
						t.Errorf("provider depends on %s: it may import only the standard library", dep)
					}
				}
			}
			rule, known := ruleFor(r)
			if !known {
				t.Errorf("package %s has no layering rule: add it to allowedKvmpki", r)
				return
			}
			for _, imp := range p.Imports {
				ir, ok := rel(imp)
				if !ok || ir == rule || strings.HasPrefix(ir, rule+"/") {
					continue
				}
				allowed := false
				for _, a := range allowedKvmpki[rule] {
					if ir == a {
						allowed = true
					}
				}
				if !allowed {
					t.Errorf("%s imports %s, which the layering forbids", r, ir)
				}
			}
		})
	}
}
