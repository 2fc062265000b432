#!/bin/bash
# docs/man/cubeid.1 is rendered from the same tables as `cubeid ... --help`
# (cli/tool-help.c).  Fail when the committed page is stale, so a changed
# option or help line cannot reach users in one place and not the other.
# Fix a failure with `make update-man` and commit docs/man/cubeid.1.
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-.}
cubeid=$builddir/cli/cubeid
page=$srcdir/docs/man/cubeid.1

if [ ! -x "$cubeid" ]; then
	echo "FAIL: $cubeid not built" >&2
	exit 1
fi
tmp=$(mktemp) || exit 1
trap 'rm -f "$tmp"' EXIT

if ! "$cubeid" --help-man >"$tmp"; then
	echo "FAIL: cubeid --help-man failed" >&2
	exit 1
fi
if ! diff -u "$page" "$tmp"; then
	echo "FAIL: $page is stale: run 'make update-man' and commit it" >&2
	exit 1
fi

# Every command in the man page answers --help with the same summary.
fail=0
while IFS= read -r cmd; do
	# shellcheck disable=SC2086
	if ! help=$("$cubeid" $cmd --help); then
		echo "FAIL: cubeid $cmd --help exited non-zero" >&2
		fail=1
		continue
	fi
	case $help in
	"usage: cubeid $cmd"*) ;;
	*)
		echo "FAIL: cubeid $cmd --help does not start with its usage line" >&2
		fail=1
		;;
	esac
done < <(sed -n 's/^\.SS "cubeid \(.*\)"$/\1/p' "$page")
if [ "$(grep -c '^\.SS "cubeid ' "$page")" -lt 5 ]; then
	echo "FAIL: the man page lists fewer commands than the token group has" >&2
	fail=1
fi
# man(1) must be able to render it without warnings, when it is installed.
if command -v groff >/dev/null 2>&1; then
	warn=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
	if [ -n "$warn" ]; then
		echo "FAIL: groff warns about $page:" >&2
		echo "$warn" >&2
		fail=1
	fi
fi
exit $fail
