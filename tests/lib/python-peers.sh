#!/bin/bash
# python-peers.sh: py-spiffe for the tests (tests/python/requirements.txt),
# installed with pip into a virtualenv in a cache keyed by the Python version
# and the requirements, so that a rerun is instant.
#
#   python-peers.sh python    print the virtualenv's python, installing first
#
# Cache layout (nothing is written outside it):
#   ${CUBEID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cubeid}/python/
#     venv-<python version>-<requirements hash>/   the virtualenv
#     pip/                                         pip's download cache
#
# Exit status: 0 ok; 1 the install failed; 2 usage; 3 no python3 >= 3.9 or
# no venv module (Debian: python3-venv).  Callers decide whether that is a
# skip or a failure (in CI it is a failure).
set -eu

prog=python-peers.sh
here=$(cd "$(dirname "$0")" && pwd)
srcdir=${CUBEID_SRCDIR:-$(cd "$here/../.." && pwd)}
req=$srcdir/tests/python/requirements.txt
cache=${CUBEID_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/cubeid}
pdir=$cache/python

die() {
	local rc=$1
	shift
	{
		echo "=================================================================="
		echo "$prog: ERROR: $*"
		echo "=================================================================="
	} >&2
	exit "$rc"
}
note() { echo "$prog: $*" >&2; }

[ "${1:-}" = python ] || { echo "usage: $prog python   (cache: $pdir)" >&2; exit 2; }
py=${CUBEID_PYTHON:-python3}
command -v "$py" >/dev/null 2>&1 || die 3 "$py not found (Debian: python3, python3-venv)"
ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2]); sys.exit(sys.version_info < (3, 9))') ||
	die 3 "py-spiffe needs Python 3.9 or later; $py is ${ver:-unknown}"
"$py" -c 'import venv, ensurepip' 2>/dev/null ||
	die 3 "$py has no venv/ensurepip module: install the Debian package python3-venv"

hash=$( (cat "$req" && readlink -f "$(command -v "$py")") | sha256sum | cut -c1-12)
venv=$pdir/venv-$ver-$hash
if [ ! -f "$venv/.cubeid-ready" ]; then
	mkdir -p "$pdir"
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$pdir/.lock"
		flock 9
	fi
fi
if [ ! -f "$venv/.cubeid-ready" ]; then
	start=$(date +%s)
	note "creating a virtualenv with $py $ver and installing $(grep -v '^#' "$req" | tr '\n' ' ')"
	# a virtualenv's scripts name its own path: it is built where it will
	# live, and only .cubeid-ready (written last) makes it usable
	rm -rf "$venv"
	"$py" -m venv "$venv" || die 1 "$py -m venv $venv failed"
	if ! PIP_CACHE_DIR=$pdir/pip PIP_DISABLE_PIP_VERSION_CHECK=1 \
		"$venv/bin/python" -m pip install -q -r "$req" >&2; then
		rm -rf "$venv"
		die 1 "pip could not install tests/python/requirements.txt (see above)"
	fi
	touch "$venv/.cubeid-ready"
	note "installed in $(($(date +%s) - start)) s"
	find "$pdir" -maxdepth 1 -name 'venv-*' ! -name "venv-$ver-$hash" \
		-mmin +60 -exec rm -rf {} + 2>/dev/null || true
fi
echo "$venv/bin/python"
