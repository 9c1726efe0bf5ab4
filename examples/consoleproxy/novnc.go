package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// noVNCVersion is the npm @novnc/novnc release install-novnc.sh installs
// and the console page is tested with.
const noVNCVersion = "1.5.0"

// defaultNoVNCDir is where install-novnc.sh puts noVNC when neither its
// argument nor KVMPKI_NOVNC_DIR says otherwise.
func defaultNoVNCDir() string {
	if d := os.Getenv("KVMPKI_NOVNC_DIR"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(cache, "kvmpki", "novnc")
}

// maxNoVNCBytes bounds the size of the bundle (noVNC 1.5.0's lib is about
// 856 KiB).
const maxNoVNCBytes = 8 << 20

// bundleNoVNC reads the CommonJS modules of the npm package (lib/, as
// npm ships it) installed under dir and joins them into one classic
// script defining window.NoVNC.RFB, so that the browser needs neither a
// bundler nor a module loader, and the page is served with scripts from
// the proxy only.
func bundleNoVNC(dir string) ([]byte, error) {
	pkg := filepath.Join(dir, "node_modules", "@novnc", "novnc")
	meta, err := os.ReadFile(filepath.Join(pkg, "package.json"))
	if err != nil {
		return nil, fmt.Errorf("consoleproxy: noVNC not found in %s (run examples/consoleproxy/install-novnc.sh): %w", dir, err)
	}
	var m struct{ Version string }
	if err := json.Unmarshal(meta, &m); err != nil {
		return nil, fmt.Errorf("consoleproxy: noVNC package.json: %w", err)
	}
	if m.Version != noVNCVersion {
		return nil, fmt.Errorf("consoleproxy: noVNC %s in %s, want %s (run examples/consoleproxy/install-novnc.sh)", m.Version, dir, noVNCVersion)
	}
	lib := os.DirFS(pkg)
	var b bytes.Buffer
	b.WriteString("// noVNC " + noVNCVersion + " (MPL-2.0, https://github.com/novnc/noVNC), CommonJS modules joined by consoleproxy.\n")
	b.WriteString("(function () {\n\"use strict\";\nvar defs = {}, cache = {};\n")
	err = fs.WalkDir(lib, "lib", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(name, ".js") {
			return err
		}
		src, err := fs.ReadFile(lib, name)
		if err != nil {
			return err
		}
		if b.Len()+len(src) > maxNoVNCBytes {
			return fmt.Errorf("more than %d bytes of scripts", maxNoVNCBytes)
		}
		key, _ := json.Marshal(name)
		fmt.Fprintf(&b, "defs[%s] = function (require, module, exports) {\n", key)
		b.Write(src)
		b.WriteString("\n};\n")
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("consoleproxy: reading noVNC: %w", err)
	}
	b.WriteString(bundleLoader)
	return b.Bytes(), nil
}

// bundleLoader is the require() of the bundle: module names are paths
// under the package, resolved relative to the requiring module.
const bundleLoader = `function resolve(from, p) {
	var parts = from.split("/");
	parts.pop();
	p.split("/").forEach(function (s) {
		if (s === "..") { parts.pop(); } else if (s !== "." && s !== "") { parts.push(s); }
	});
	var name = parts.join("/");
	return /\.js$/.test(name) ? name : name + ".js";
}
function load(name) {
	if (cache[name]) { return cache[name].exports; }
	if (!defs[name]) { throw new Error("noVNC bundle: no module " + name); }
	var module = { exports: {} };
	cache[name] = module;
	defs[name](function (p) { return load(resolve(name, p)); }, module, module.exports);
	return module.exports;
}
window.NoVNC = { RFB: load("lib/rfb.js")["default"] };
})();
`
