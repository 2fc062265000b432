# keycloak.sh: a real Keycloak for the tests.  Source it (bash), then:
#
#   kc_fetch                 download (once) and unpack the pinned server
#                            distribution into the cache; sets KC_DIST
#   kc_start WORKDIR [ARG]...  copy the distribution to WORKDIR/kc, import
#                            every realm file in $KC_IMPORT_DIR (default
#                            WORKDIR/import), start `kc.sh start-dev` on
#                            127.0.0.1 with unique ports, wait until ready;
#                            extra ARGs go to kc.sh.  Sets and exports
#                            KC_URL (http://127.0.0.1:PORT), KC_MGMT_URL,
#                            KC_PID, KC_LOG, KC_ADMIN_USER, KC_ADMIN_PASSWORD_FILE
#   kc_wait [SECONDS]        wait until /health/ready says UP (kc_start does it)
#   kc_stop                  stop the server started by kc_start (by its pid)
#   kc_admin_token           print an admin access token (master realm)
#   kc_free_port             print a TCP port nobody listens on
#
# The server runs with the preview features SPIFFE client authentication
# needs (spiffe, client-auth-federated); standard token exchange (v2) is on
# by default in 26.2 and later.  The database is in memory (dev-mem), so a
# run leaves nothing behind but WORKDIR.
#
# Environment:
#   CUBEID_KEYCLOAK_VERSION  the version to use (default below; pinned)
#   CUBEID_CACHE_DIR         the download cache (~/.cache/cubeid)
#   KC_JAVA_HOME             a JDK/JRE >= 21 (default: searched in $JAVA_HOME,
#                            then /usr/lib/jvm)
#   KC_START_TIMEOUT         seconds to wait for readiness (default 900)
#
# A download that fails, or no Java >= 21, is an error (return 1), never a
# skip: callers fail loudly.

KC_VERSION=${CUBEID_KEYCLOAK_VERSION:-26.5.6}
KC_FEATURES=${KC_FEATURES:-spiffe,client-auth-federated}
KC_CACHE=${CUBEID_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/cubeid}/keycloak

kc_log() { echo "keycloak.sh: $*" >&2; }
kc_die() {
	{
		echo "=================================================================="
		echo "keycloak.sh: ERROR: $*"
		echo "=================================================================="
	} >&2
	return 1
}

# The major version of the java in JDK dir $1, or nothing.
kc_java_major() {
	local v
	[ -x "$1/bin/java" ] || return 0
	v=$("$1/bin/java" -XshowSettings:properties -version 2>&1 |
		sed -n 's/^ *java\.specification\.version = //p')
	echo "${v%%.*}"
}

# Sets KC_JAVA_HOME to a Java >= 21.
kc_find_java() {
	local d m
	if [ -n "${KC_JAVA_HOME:-}" ]; then
		m=$(kc_java_major "$KC_JAVA_HOME")
		[ -n "$m" ] && [ "$m" -ge 21 ] && return 0
		kc_die "KC_JAVA_HOME=$KC_JAVA_HOME is not a Java >= 21" || return 1
	fi
	for d in ${JAVA_HOME:-} /usr/lib/jvm/*; do
		[ -d "$d" ] || continue
		m=$(kc_java_major "$d")
		if [ -n "$m" ] && [ "$m" -ge 21 ]; then
			KC_JAVA_HOME=$d
			export KC_JAVA_HOME
			return 0
		fi
	done
	kc_die "Keycloak $KC_VERSION needs Java 21 or later; none found in \$JAVA_HOME or /usr/lib/jvm" \
		"(install a JDK >= 21, e.g. openjdk-21-jre-headless, or set KC_JAVA_HOME)"
}

# Download and unpack the distribution once; sets KC_DIST.
kc_fetch() {
	local dir=$KC_CACHE/$KC_VERSION tgz tmp
	tgz=$dir/keycloak-quarkus-dist-$KC_VERSION.tar.gz
	KC_DIST=$dir/keycloak-$KC_VERSION
	if [ -x "$KC_DIST/bin/kc.sh" ] && [ -f "$KC_DIST/.cubeid-unpacked" ]; then
		return 0
	fi
	mkdir -p "$dir" || { kc_die "cannot create $dir"; return 1; }
	if [ ! -s "$tgz" ]; then
		command -v mvn >/dev/null 2>&1 ||
			{ kc_die "mvn not found: it fetches org.keycloak:keycloak-quarkus-dist:$KC_VERSION (Debian package maven)"; return 1; }
		kc_log "downloading org.keycloak:keycloak-quarkus-dist:$KC_VERSION:tar.gz into $dir"
		if ! mvn -q -B dependency:copy \
			-Dartifact="org.keycloak:keycloak-quarkus-dist:$KC_VERSION:tar.gz" \
			-DoutputDirectory="$dir" >"$dir/mvn.log" 2>&1 || [ ! -s "$tgz" ]; then
			cat "$dir/mvn.log" >&2
			rm -f "$tgz"
			kc_die "download of keycloak-quarkus-dist $KC_VERSION failed (see above)"
			return 1
		fi
	fi
	tmp=$(mktemp -d "$dir/unpack.XXXXXX") || return 1
	if ! tar -xzf "$tgz" -C "$tmp"; then
		rm -rf "$tmp"
		kc_die "cannot unpack $tgz"
		return 1
	fi
	rm -rf "$KC_DIST"
	mv "$tmp/keycloak-$KC_VERSION" "$KC_DIST" && rm -rf "$tmp" &&
		touch "$KC_DIST/.cubeid-unpacked" || { kc_die "cannot install $KC_DIST"; return 1; }
}

# shellcheck source=tests/lib/free-port.sh
. "$(dirname "${BASH_SOURCE[0]}")/free-port.sh"
kc_free_port() {
	free_port
}

kc_wait() {
	local limit=${1:-${KC_START_TIMEOUT:-900}} t=0
	while [ "$t" -lt "$limit" ]; do
		if ! kill -0 "$KC_PID" 2>/dev/null; then
			tail -n 60 "$KC_LOG" >&2
			kc_die "Keycloak exited during start-up (log above: $KC_LOG)"
			return 1
		fi
		if curl -sf --max-time 5 "$KC_MGMT_URL/health/ready" 2>/dev/null | grep -q '"UP"'; then
			kc_log "ready after ${t}s at $KC_URL"
			return 0
		fi
		sleep 2
		t=$((t + 2))
	done
	tail -n 60 "$KC_LOG" >&2
	kc_die "Keycloak not ready after ${limit}s (log: $KC_LOG)"
}

kc_start() {
	local work=$1 port mport f
	shift
	kc_find_java || return 1
	kc_fetch || return 1
	mkdir -p "$work" || return 1
	# A private copy: start-dev re-augments the server (lib/quarkus) and
	# writes data/, so runs in parallel must not share the cache's copy.
	rm -rf "$work/kc"
	cp -a "$KC_DIST" "$work/kc" || { kc_die "cannot copy $KC_DIST"; return 1; }
	mkdir -p "$work/kc/data/import"
	for f in "${KC_IMPORT_DIR:-$work/import}"/*.json; do
		[ -e "$f" ] || continue
		cp "$f" "$work/kc/data/import/" || return 1
	done
	port=$(kc_free_port) && mport=$(kc_free_port) || { kc_die "no free port"; return 1; }
	KC_ADMIN_USER=admin
	KC_ADMIN_PASSWORD_FILE=$work/admin.password
	(umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$KC_ADMIN_PASSWORD_FILE")
	KC_URL=http://127.0.0.1:$port
	KC_MGMT_URL=http://127.0.0.1:$mport
	KC_LOG=$work/keycloak.log
	kc_log "starting Keycloak $KC_VERSION (Java $(kc_java_major "$KC_JAVA_HOME")) at $KC_URL"
	# setsid: the server gets a process group of its own, which kc_stop ends.
	KC_BOOTSTRAP_ADMIN_USERNAME=$KC_ADMIN_USER \
		KC_BOOTSTRAP_ADMIN_PASSWORD=$(cat "$KC_ADMIN_PASSWORD_FILE") \
		JAVA_HOME=$KC_JAVA_HOME JAVA_OPTS_APPEND="${KC_JAVA_OPTS:--Xms64m -Xmx768m}" \
		setsid "$work/kc/bin/kc.sh" start-dev --import-realm \
		--http-host=127.0.0.1 --http-port="$port" --http-management-port="$mport" \
		--health-enabled=true --db=dev-mem --features="$KC_FEATURES" \
		--hostname-strict=false "$@" >"$KC_LOG" 2>&1 </dev/null &
	KC_PID=$!
	export KC_URL KC_MGMT_URL KC_PID KC_LOG KC_ADMIN_USER KC_ADMIN_PASSWORD_FILE
	kc_wait
}

kc_stop() {
	local i
	[ -n "${KC_PID:-}" ] || return 0
	if kill -0 "$KC_PID" 2>/dev/null; then
		kill -TERM -- "-$KC_PID" 2>/dev/null || kill -TERM "$KC_PID" 2>/dev/null
		for i in $(seq 1 60); do
			kill -0 "$KC_PID" 2>/dev/null || break
			sleep 1
		done
		kill -KILL -- "-$KC_PID" 2>/dev/null || true
	fi
	wait "$KC_PID" 2>/dev/null || true
	KC_PID=
}

kc_admin_token() {
	curl -sf --max-time 60 "$KC_URL/realms/master/protocol/openid-connect/token" \
		-d grant_type=password -d client_id=admin-cli -d "username=$KC_ADMIN_USER" \
		--data-urlencode "password@$KC_ADMIN_PASSWORD_FILE" | jq -r .access_token
}
