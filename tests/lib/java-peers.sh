#!/bin/bash
# java-peers.sh: the Java SPIFFE client for the tests: java-spiffe and its
# dependencies (tests/java/pom.xml) copied from Maven with `mvn
# dependency:copy-dependencies`, and tests/java/*.java compiled with javac
# against them, both into a cache keyed by version, so that a rerun is
# instant.
#
#   java-peers.sh classpath   print the classpath, fetching and compiling first
#   java-peers.sh java        print the java command that runs it
#
# Cache layout (nothing is written outside it):
#   ${CUBEID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cubeid}/java/
#     m2/                                   Maven's local repository
#     java-spiffe-<version>-<pom hash>/lib/ the jars
#     classes-<sources hash>/               the compiled test program
#
# Exit status: 0 ok; 1 a download or compile failed; 2 usage; 3 no usable
# JDK or no mvn.  Callers decide whether that is a skip or a failure (in CI
# it is a failure).
set -eu

prog=java-peers.sh
here=$(cd "$(dirname "$0")" && pwd)
srcdir=${CUBEID_SRCDIR:-$(cd "$here/../.." && pwd)}
jsrc=$srcdir/tests/java
cache=${CUBEID_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/cubeid}
jdir=$cache/java
MIN_JAVA=11

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

java_major() { # the major version of JDK dir $1's java, or nothing
	local v
	[ -x "$1/bin/java" ] || return 0
	v=$("$1/bin/java" -XshowSettings:properties -version 2>&1 |
		sed -n 's/^ *java\.specification\.version = //p')
	v=${v#1.}
	echo "${v%%.*}"
}

# Sets JDK to a JDK (java and javac) >= MIN_JAVA: $CUBEID_JAVA_HOME, then
# $JAVA_HOME, the javac in PATH, /usr/lib/jvm/*.
find_jdk() {
	local d m c
	c=$(command -v javac 2>/dev/null || true)
	[ -n "$c" ] && c=$(dirname "$(dirname "$(readlink -f "$c")")")
	for d in ${CUBEID_JAVA_HOME:-} ${JAVA_HOME:-} $c /usr/lib/jvm/*; do
		[ -d "$d" ] && [ -x "$d/bin/javac" ] || continue
		m=$(java_major "$d")
		if [ -n "$m" ] && [ "$m" -ge "$MIN_JAVA" ]; then
			JDK=$d
			return 0
		fi
	done
	die 3 "a JDK >= $MIN_JAVA (java and javac) is needed for the java-spiffe tests;
  none in \$CUBEID_JAVA_HOME, \$JAVA_HOME, PATH or /usr/lib/jvm
  (Debian 12: openjdk-17-jdk-headless)"
}

with_lock() {
	mkdir -p "$jdir"
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$jdir/.lock"
		flock 9
	fi
}

spiffe_version() {
	sed -n 's:.*<java-spiffe.version>\(.*\)</java-spiffe.version>.*:\1:p' "$jsrc/pom.xml"
}

# The jars, once per version and pom; prints the lib directory.
fetch_jars() {
	local ver hash dir tmp start
	ver=$(spiffe_version)
	[ -n "$ver" ] || die 1 "no java-spiffe.version in $jsrc/pom.xml"
	hash=$(sha256sum <"$jsrc/pom.xml" | cut -c1-12)
	dir=$jdir/java-spiffe-$ver-$hash
	if [ -f "$dir/.cubeid-ready" ]; then
		echo "$dir/lib"
		return 0
	fi
	command -v mvn >/dev/null 2>&1 ||
		die 3 "mvn not found: it fetches java-spiffe $ver (Debian package maven)"
	tmp=$jdir/.tmp-jars-$$
	rm -rf "$tmp"
	mkdir -p "$tmp"
	start=$(date +%s)
	note "fetching java-spiffe $ver and its dependencies with mvn into $dir"
	if ! JAVA_HOME=$JDK mvn -B -q -f "$jsrc/pom.xml" \
		-Dmaven.repo.local="$jdir/m2" dependency:copy-dependencies \
		-DoutputDirectory="$tmp/lib" >"$tmp/mvn.log" 2>&1 ||
		! ls "$tmp/lib"/java-spiffe-core-"$ver".jar >/dev/null 2>&1; then
		cat "$tmp/mvn.log" >&2
		rm -rf "$tmp"
		die 1 "mvn could not fetch java-spiffe $ver (see above)"
	fi
	rm -rf "$dir"
	mv "$tmp" "$dir"
	touch "$dir/.cubeid-ready"
	note "fetched $(ls "$dir/lib" | wc -l) jars in $(($(date +%s) - start)) s"
	echo "$dir/lib"
}

# The test program, compiled once per sources and jars; prints its dir.
compile() {
	local lib=$1 hash dir tmp
	hash=$( (cat "$jsrc"/*.java && echo "$lib") | sha256sum | cut -c1-16)
	dir=$jdir/classes-$hash
	if [ -f "$dir/.cubeid-ready" ]; then
		echo "$dir"
		return 0
	fi
	tmp=$jdir/.tmp-classes-$$
	rm -rf "$tmp"
	mkdir -p "$tmp"
	note "compiling tests/java with $JDK/bin/javac"
	"$JDK/bin/javac" -nowarn -d "$tmp" -cp "$lib/*" "$jsrc"/*.java >&2 ||
		{ rm -rf "$tmp"; die 1 "javac failed on tests/java"; }
	mv "$tmp" "$dir"
	touch "$dir/.cubeid-ready"
	# drop the builds of older sources
	find "$jdir" -maxdepth 1 -name 'classes-*' ! -name "classes-$hash" \
		-mmin +60 -exec rm -rf {} + 2>/dev/null || true
	echo "$dir"
}

case ${1:-} in
classpath)
	find_jdk
	with_lock
	lib=$(fetch_jars)
	classes=$(compile "$lib")
	echo "$classes:$lib/*"
	;;
java)
	find_jdk
	echo "$JDK/bin/java"
	;;
*)
	echo "usage: $prog classpath | java   (cache: $jdir)" >&2
	exit 2
	;;
esac
