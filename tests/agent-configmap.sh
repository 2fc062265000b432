#!/bin/bash
# Entries from a Kubernetes ConfigMap volume reload without a signal.  The
# kubelet updates such a volume by writing a new ..TIMESTAMP directory and
# renaming the ..data symlink over the old one; entries.yaml itself is a
# symlink through ..data that never changes.  The real agent, with its
# entries given as that file and then as that directory, must serve the new
# entries after such an update.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR SPIFFE_ENDPOINT_SOCKET
D=$(mktemp -d /tmp/cubeid-configmap.XXXXXX) || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
uid=$(id -u)
fails=0
n=0
assert() {
	n=$((n + 1))
	if "${@:2}"; then echo "ok $n - $1"; else
		fails=$((fails + 1))
		echo "not ok $n - $1"
		sed 's/^/    | /' "$D/agent.err"
	fi
}
version=0
publish() { # publish NAME: a ConfigMap update with one entry for our uid
	version=$((version + 1))
	mkdir -p "$CM/..v$version"
	cat >"$CM/..v$version/entries.yaml" <<EOF2
entries:
  - name: $1
    spiffe_id: spiffe://{td}/$1/{unix:uid}
    selectors: [unix:uid:$uid]
EOF2
	ln -s "..v$version" "$CM/..data_tmp"
	mv -T "$CM/..data_tmp" "$CM/..data"
	[ -e "$CM/entries.yaml" ] || ln -s ..data/entries.yaml "$CM/entries.yaml"
}
served() { # served NAME: the agent gives our uid spiffe://cluster.local/NAME/UID
	local i
	for i in $(seq 1 100); do
		"$cubeid" jwt fetch --aud cm --spiffe-id "spiffe://cluster.local/$1/$uid" \
			--socket "$D/agent.sock" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

for mode in file directory; do
	CM=$D/cm-$mode
	mkdir -p "$CM"
	publish "first-$mode"
	[ $mode = file ] && entries=$CM/entries.yaml || entries=$CM
	"$agent" --dev --state-dir "$D/state" --socket "$D/agent.sock" --entries "$entries" \
		>"$D/agent.out" 2>"$D/agent.err" &
	pid=$!
	assert "$mode: the first version is served" served "first-$mode"
	publish "second-$mode"
	assert "$mode: a ConfigMap-style update is served without a signal" served "second-$mode"
	assert "$mode: the agent logged the reload" grep -q "entries changed" "$D/agent.err"
	kill "$pid"
	wait "$pid"
	pid=
done
echo "1..$n"
[ "$fails" -eq 0 ]
