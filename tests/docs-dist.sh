#!/bin/sh
# Every page under docs/ ships in the release tarball: each docs/*.md is in
# docs/local.mk's EXTRA_DIST, and each man page in some dist_man_MANS.
src=${CUBEID_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
fail=0
for f in "$src"/docs/*.md; do
	rel=docs/${f##*/}
	if ! grep -q "$rel" "$src/docs/local.mk"; then
		echo "FAIL: $rel is not in docs/local.mk EXTRA_DIST"
		fail=1
	fi
done
for f in "$src"/docs/man/*.[1-8]; do
	rel=docs/man/${f##*/}
	if ! grep -h "dist_man_MANS" "$src"/*/local.mk "$src/Makefile.am" | grep -q "$rel"; then
		echo "FAIL: $rel is not in any dist_man_MANS"
		fail=1
	fi
done
[ $fail -eq 0 ] && echo "docs-dist: every page under docs/ ships"
exit $fail
