#!/bin/bash
# The container image (scripts/image) is complete: unpacked with umoci, its
# rootfs runs `cubeid-agent --dev` as its own non-root user in a private
# mount namespace (chroot; the host's /proc, /dev and a socket directory
# bound in), and a client outside fetches an X.509-SVID over the socket.
# That needs every library, the SoftHSM2 module, the passwd entries and the
# CA bundle to be in the image.  Also: no shell, the labels, the user, and
# a second build of the same binaries has the same digest.  The default
# image's shell minimum (for the DaemonSet's scripts) is checked; the agent
# runs from the --no-shell image.
#
# The image is built here (about 1 minute: mmdebstrap downloads some 20 MB
# of Debian packages) unless CUBEID_IMAGE_DIR names one scripts/image made.
# Skipped, loudly, without root or without mmdebstrap, umoci and skopeo.
set -u
builddir=${CUBEID_BUILDDIR:-.}
srcdir=${CUBEID_SRCDIR:-.}
cubeid=$builddir/cli/cubeid

if [ "$(id -u)" != 0 ]; then
	echo "SKIP: the image test needs root (mmdebstrap, chroot, unshare --mount)"
	exit 77
fi
for t in mmdebstrap umoci skopeo unshare chroot setpriv python3 openssl; do
	if ! command -v "$t" >/dev/null 2>&1; then
		echo "SKIP: $t not found (apt-get install mmdebstrap umoci skopeo)"
		exit 77
	fi
done
D=$(mktemp -d /tmp/cubeid-image-test.XXXXXX) || exit 1
chmod 0755 "$D"
pid=
cleanup() {
	# the agent (unshare waits for it, and does not pass SIGTERM on)
	[ -s "$D/agent.pid" ] && kill "$(cat "$D/agent.pid")" 2>/dev/null
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/tap.sh"

img=${CUBEID_IMAGE_DIR:-}
if [ -z "$img" ]; then
	img=$D/image
	check "scripts/image builds the image" 0 "$srcdir/scripts/image" --builddir "$builddir" --out "$img"
	check "a second build" 0 "$srcdir/scripts/image" --builddir "$builddir" --out "$D/image2"
	assert "has the same digest" [ "$(cat "$img/digest")" = "$(cat "$D/image2/digest")" ]
	rm -rf "$D/image2"
	check "scripts/image --no-shell" 0 "$srcdir/scripts/image" --builddir "$builddir" --out "$D/image-ns" --no-shell
fi
# the default image: the shell scripts' minimum and nothing more
if [ -f "$img/digest" ]; then
	v0=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$img/oci/index.json")
	check "umoci unpack (default image)" 0 umoci unpack --image "$img/oci:$v0" "$D/bundle0"
	progs=$(find "$D/bundle0/rootfs/usr/bin" "$D/bundle0/rootfs/usr/sbin" -mindepth 1 -printf '%f\n' | LC_ALL=C sort | tr '\n' ' ')
	assert "its programs are the minimum (got: $progs)" [ "$progs" = "cat cubeid cubeid-agent curl dash mkdir mv rm sed sh sleep " ]
	check "its /bin/sh runs the enrol script's tools as the non-root user" 0 chroot --userspec=65532:65532 \
		"$D/bundle0/rootfs" /bin/sh -c 'echo x | sed s/x/y/ && cat /etc/passwd >/dev/null && curl --version >/dev/null'
	rm -rf "$D/bundle0"
fi
# the rest on the image without a shell, if it was built here
[ -d "$D/image-ns" ] && img=$D/image-ns
[ -f "$img/digest" ] || {
	echo "not ok - no image in $img"
	echo "1..$((n + 1))"
	exit 1
}
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$img/oci/index.json")
check "skopeo reads the docker-archive" 0 skopeo inspect "docker-archive:$img/cubeid-agent.tar"
assert "it is named cubeid-agent:$version" grep -q "cubeid-agent" "$D/out"
check "umoci unpack" 0 umoci unpack --image "$img/oci:$version" "$D/bundle"
R=$D/bundle/rootfs
cfg=$D/bundle/config.json
assert "the image runs as uid 65532" python3 -c 'import json,sys; u=json.load(open(sys.argv[1]))["process"]["user"]; sys.exit(not (u["uid"]==65532 and u["gid"]==65532))' "$cfg"
check "skopeo inspect --config" 0 skopeo inspect --config "oci:$img/oci:$version"
for l in title version revision created; do
	assert "label org.opencontainers.image.$l" grep -q "\"org.opencontainers.image.$l\"" "$D/out"
done
assert "the Debian packages are recorded" grep -q '"io.cubeid.debian-packages": "[^"]*libc6=' "$D/out"
assert "the packages list has libc6" grep -q '^libc6=' "$img/packages.txt"
for f in usr/sbin/cubeid-agent usr/bin/cubeid usr/lib/softhsm/libsofthsm2.so \
	usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so etc/ssl/certs/ca-certificates.crt; do
	assert "the image has /$f" [ -e "$R/$f" ]
done
assert "passwd has the user cubeid 65532" grep -q '^cubeid:x:65532:65532:' "$R/etc/passwd"
shells=$(find "$R" \( -name sh -o -name dash -o -name bash -o -name busybox -o -name perl \) -printf '%P ')
if [ "$img" = "$D/image-ns" ]; then
	assert "no shell in the --no-shell image (found: ${shells:-none})" [ -z "$shells" ]
	assert "only cubeid and cubeid-agent are programs" [ "$(find -L "$R/usr/bin" "$R/usr/sbin" -type f | wc -l)" = 2 ]
fi

# Run the agent from the rootfs, as the image's user, with --dev (a token
# and a CA of its own under a state directory in the image's tmpfs).
mkdir -p "$D/sock"
chown 65532:65532 "$D/sock"
printf 'entries: []\n' >"$R/etc/cubeid/entries.yaml"
unshare --mount --fork --kill-child -- /bin/bash -c '
	set -e
	R=$1
	mount --make-rprivate /
	mount -t proc proc "$R/proc"
	mount --rbind /dev "$R/dev"
	mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
	mount --bind "$2" "$R/run/cubeid"
	echo $$ >"$3"
	exec chroot --userspec=65532:65532 "$R" /usr/sbin/cubeid-agent --dev \
		--state-dir /tmp/state --socket /run/cubeid/agent.sock \
		--entries /etc/cubeid/entries.yaml --log-level info
' image-agent "$R" "$D/sock" "$D/agent.pid" >"$D/agent.out" 2>"$D/agent.err" &
pid=$!
S=$D/sock/agent.sock
as_agent_user() { setpriv --reuid 65532 --regid 65532 --clear-groups -- "$@"; }
# until the socket answers, or the agent has died
while kill -0 "$pid" 2>/dev/null; do
	[ -S "$S" ] && as_agent_user "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	sleep 0.1
done
check "the agent in the image's rootfs is up (cubeid status from outside)" 0 as_agent_user "$cubeid" status --socket "$S"
[ "$fails" -eq 0 ] || sed 's/^/# agent: /' "$D/agent.err"
mkdir -p "$D/svid"
chown 65532:65532 "$D/svid"
check "svid fetch from outside" 0 as_agent_user "$cubeid" svid fetch --socket "$S" --out "$D/svid"
assert "the SVID is the --dev user's" grep -qx "spiffe://cluster.local/unix/uid/65532" "$D/out"
check "the SVID verifies against the bundle" 0 openssl verify -CAfile "$D/svid/svid_bundle.pem" "$D/svid/svid.pem"
kill "$(cat "$D/agent.pid")"
wait "$pid"
rc=$?
pid=
assert "the agent stopped on SIGTERM with status 0 (got $rc)" [ "$rc" = 0 ]

echo "1..$n"
[ "$fails" -eq 0 ]
