#!/bin/bash
# cubeid-agent(8), cubeid.conf(5) and cubeid-entries(5) are rendered from
# agent/agent-doc.c, the same tables as `cubeid-agent --help` and getopt.
# Fail when a committed page is stale (fix: `make update-man`, commit), when
# --help lacks an option the man page has, or when groff warns.
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-.}
agent=$builddir/agent/cubeid-agent
tmp=$(mktemp) || exit 1
trap 'rm -f "$tmp"' EXIT
fail=0
for p in cubeid-agent.8 cubeid.conf.5 cubeid-entries.5; do
	page=$srcdir/docs/man/$p
	if ! "$agent" --help-man="$p" >"$tmp"; then
		echo "FAIL: cubeid-agent --help-man=$p failed" >&2
		fail=1
		continue
	fi
	if ! diff -u "$page" "$tmp"; then
		echo "FAIL: $page is stale: run 'make update-man' and commit it" >&2
		fail=1
	fi
	if command -v groff >/dev/null 2>&1; then
		warn=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
		if [ -n "$warn" ]; then
			echo "FAIL: groff warns about $page:" >&2
			echo "$warn" >&2
			fail=1
		fi
	fi
	echo "ok - $p"
done
# every option of the man page is in --help, and the other way round
help=$("$agent" --help) || { echo "FAIL: --help" >&2; exit 1; }
man_opts=$(sed -n 's/^.*\\fB\\-\\-\([a-z0-9\\-]*\)\\fR.*$/\1/p' "$srcdir/docs/man/cubeid-agent.8" |
	sed 's/\\-/-/g' | sort -u)
help_opts=$(printf '%s\n' "$help" | grep -o -- '^ *\(-[a-z], \)\?--[a-z0-9-]*' |
	sed 's/.*--//' | sort -u)
if [ "$man_opts" != "$help_opts" ] || [ -z "$man_opts" ]; then
	echo "FAIL: options differ between cubeid-agent(8) and --help:" >&2
	diff <(echo "$man_opts") <(echo "$help_opts") >&2
	fail=1
else
	echo "ok - $(echo "$man_opts" | wc -l) options in both --help and the man page"
fi
# the keys a config file may hold: every one in the page
for k in $(sed -n 's/^\\fB\([a-z0-9_.]*\)\\fR$/\1/p' "$srcdir/docs/man/cubeid.conf.5"); do
	case $k in
	grpc.*) y="grpc:\n  ${k#grpc.}: 1" ;;
	cluster.*) y="cluster:\n  ${k#cluster.}: ~" ;;
	*) y="$k: ~" ;;
	esac
	printf "$y\n" >"$tmp"
	if "$agent" --config "$tmp" --check 2>&1 | grep -q "unknown key"; then
		echo "FAIL: cubeid.conf(5) documents '$k', which the agent rejects" >&2
		fail=1
	fi
done
exit $fail
