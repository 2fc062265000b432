# tests/lib/tap.sh: the TAP helpers the shell tests share.  Source it
# (". "$(dirname "$0")/lib/tap.sh"") after making the test's temp directory:
# the commands' output is kept in $TAP_DIR (default $D) as out and err.
#
#   check NAME WANT_RC CMD...  run CMD with stdout in $TAP_DIR/out and stderr
#                              in $TAP_DIR/err; "ok" if it exits WANT_RC, else
#                              "not ok" and what it printed
#   assert NAME TEST...        "ok" if TEST (any command) succeeds
#   ok NAME, bad NAME          a result decided by the caller
#
# $n counts the tests and $fails the failures; a test ends with
#   echo "1..$n"   and   [ "$fails" -eq 0 ]
# (or its own summary that reads them).
n=0
fails=0

ok() {
	n=$((n + 1))
	echo "ok $n - $1"
}

bad() {
	n=$((n + 1))
	fails=$((fails + 1))
	echo "not ok $n - $1"
}

# What the last check printed, indented, at most 40 lines.
tap_show() {
	local dir=${TAP_DIR:-$D}

	cat "$dir/err" "$dir/out" 2>/dev/null | head -40 | sed 's/^/    | /'
}

check() { # check NAME WANT_RC CMD...
	local name=$1 want=$2 got dir=${TAP_DIR:-$D}

	shift 2
	"$@" >"$dir/out" 2>"$dir/err"
	got=$?
	if [ "$got" -eq "$want" ]; then
		ok "$name"
	else
		bad "$name (exit $got, want $want)"
		tap_show
	fi
}

assert() { # assert NAME TEST...
	if "${@:2}"; then
		ok "$1"
	else
		bad "$1"
	fi
}
