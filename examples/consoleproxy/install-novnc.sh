#!/usr/bin/env bash
# Installs noVNC (npm @novnc/novnc, pinned) into a cache directory for
# examples/consoleproxy, which serves it to the browser; noVNC is not
# copied into the repository. Needs npm (Debian: npm).
#
#   examples/consoleproxy/install-novnc.sh [DIR]
#
# DIR defaults to $KVMPKI_NOVNC_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/kvmpki/novnc,
# the directory consoleproxy reads by default (its -novnc flag). The
# script is idempotent: it does nothing when that version is installed.
# 1.5.0, not 1.6.0: the CommonJS build (lib/) of 1.6.0 has a top-level
# await in lib/util/browser.js, which no CommonJS loader can run.
set -euo pipefail

version=1.5.0
dir="${1:-${KVMPKI_NOVNC_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/kvmpki/novnc}}"
pkg="${dir}/node_modules/@novnc/novnc"

if [[ -f "${pkg}/package.json" ]] && grep -q "\"version\": \"${version}\"" "${pkg}/package.json"; then
	echo "noVNC ${version} already in ${dir}"
	exit 0
fi
command -v npm >/dev/null || {
	echo "install-novnc: npm not found (Debian package npm)" >&2
	exit 1
}
mkdir -p "${dir}"
# --ignore-scripts: noVNC needs no install step, and no package script
# runs as the (often root) user installing it.
npm install --prefix "${dir}" --no-save --no-audit --no-fund --ignore-scripts "@novnc/novnc@${version}" >&2
test -f "${pkg}/lib/rfb.js" || {
	echo "install-novnc: ${pkg}/lib/rfb.js missing after npm install" >&2
	exit 1
}
echo "noVNC ${version} installed in ${dir}"
