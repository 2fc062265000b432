#!/bin/bash
# The programs and the library that handle keys are linked with full RELRO
# and BIND_NOW.  Without BIND_NOW the dynamic linker's lazy-binding
# trampoline saves every vector register on the caller's stack on a
# function's first call, so key bytes that a memcpy() left in a register end
# up in dumpable stack memory (the test_sensitive_output_stays_in_dontdump_memory
# failure in tests/test-grpc).  A build that drops -z now fails here, with
# the reason, before that test has to catch it by chance.
set -u
builddir=${CUBEID_BUILDDIR:-.}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
. "${CUBEID_SRCDIR:-.}/tests/lib/tap.sh"

command -v readelf >/dev/null 2>&1 || {
	echo "SKIP: readelf (binutils) not found"
	exit 77
}
for f in agent/.libs/cubeid-agent agent/cubeid-agent cli/.libs/cubeid cli/cubeid .libs/libcubeid.so; do
	p=$builddir/$f
	# libtool wrappers are scripts: check the ELF file behind them
	[ -f "$p" ] && head -c 4 "$p" | grep -q ELF || continue
	readelf -d "$p" >"$D/dyn" 2>&1
	readelf -l "$p" >"$D/seg" 2>&1
	assert "$f: BIND_NOW (no lazy binding that spills registers)" \
		grep -Eq 'BIND_NOW|Flags:.* NOW' "$D/dyn"
	assert "$f: GNU_RELRO" grep -q GNU_RELRO "$D/seg"
done
[ "$n" -gt 0 ] || bad "no built program or library found under $builddir"
echo "1..$n"
[ "$fails" -eq 0 ]
