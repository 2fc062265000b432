#!/bin/sh
# The layer rules (docs/design.md, "Layout") against the source and the
# build tree: #include lines, the objects in each library and what they
# call, and the symbols libcubeid.so exports.  tests/layering.py does the
# work; this finds Python, nm and ar, and skips (77) without them, except
# with CI=true, where that fails.
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
for t in python3 nm ar; do
	command -v "$t" >/dev/null 2>&1 && continue
	if [ "${CI:-}" = true ]; then
		echo "FAIL: $t not found (CI=true)" >&2
		exit 1
	fi
	echo "SKIP: $t not found"
	exit 77
done
exec python3 "$srcdir/tests/layering.py" "$srcdir" "$builddir"
