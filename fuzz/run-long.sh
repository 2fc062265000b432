#!/bin/bash
# Fuzz every libFuzzer target in a fuzzing build for longer than CI does:
# each target runs for FUZZ_SECONDS (default 600) from a copy of its seed
# corpus, with a random seed, and prints how many inputs it executed and
# how large the corpus grew.  A crash, a leak or undefined behaviour
# (fatal in this build) stops the target and is kept as
# fuzz/crash-TARGET-* in the build tree; the run then exits 1.
#
#   make fuzz-long [FUZZ_SECONDS=N] [FUZZ_TARGETS='jws jwks']
#
# Needs CC=clang ./configure --enable-fuzzing.  New inputs that raise
# coverage stay in the work directory printed at the end; copy the small
# and interesting ones to fuzz/corpus/TARGET/.
set -u
srcdir=${CUBEID_SRCDIR:?}
builddir=${CUBEID_BUILDDIR:?}
seconds=${FUZZ_SECONDS:-600}
work=$(mktemp -d "${TMPDIR:-/tmp}/cubeid-fuzz-long.XXXXXX") || exit 1
bad=0
n=0
printf '%-16s %12s %10s %8s  %s\n' target executions exec/s corpus result
for f in "$builddir"/fuzz/fuzz-*; do
	[ -x "$f" ] && [ -f "$f" ] || continue
	case $f in *.o | *.log) continue ;; esac
	name=${f##*/fuzz-}
	if [ -n "${FUZZ_TARGETS:-}" ] && ! [[ " $FUZZ_TARGETS " == *" $name "* ]]; then
		continue
	fi
	n=$((n + 1))
	mkdir -p "$work/$name"
	[ -d "$srcdir/fuzz/corpus/$name" ] && cp -r "$srcdir/fuzz/corpus/$name/." "$work/$name/"
	"$f" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
		-artifact_prefix="$builddir/fuzz/crash-$name-" "$work/$name" >"$work/$name.log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name.log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$name.log" | tail -n 1)
	size=$(find "$work/$name" -type f | wc -l)
	if [ $rc -eq 0 ]; then
		result=ok
	else
		result="FAILED (see $work/$name.log)"
		bad=$((bad + 1))
	fi
	printf '%-16s %12s %10s %8s  %s\n' "$name" "${execs:-?}" "${rate:-?}" "$size" "$result"
done
[ $n -gt 0 ] || {
	echo "fuzz-long: no fuzz targets under $builddir/fuzz: configure with CC=clang --enable-fuzzing"
	exit 1
}
echo "fuzz-long: $n targets, $seconds s each; corpora and logs in $work"
[ $bad -eq 0 ]
