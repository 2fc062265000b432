#!/bin/bash
# ./configure --prefix=P installs nothing outside P (issue 16, "Build and
# install"), and the agent reads its defaults under sysconfdir:
#   - a fresh configure with --prefix=P in a scratch directory puts the
#     systemd units under P/lib/systemd/system and the sysusers file under
#     P/lib/sysusers.d (make install of those two), and nothing elsewhere;
#   - the installed service runs P/sbin/cubeid-agent with
#     P/etc/cubeid/config.yaml and takes its PIN from P/etc/cubeid/pin;
#   - --with-systemdsystemunitdir=no and --with-sysusersdir=no install none;
#   - the agent of this build looks for its entries under this build's
#     sysconfdir, not /etc (unless it was configured with --sysconfdir=/etc).
set -u
srcdir=${CUBEID_SRCDIR:-.}
builddir=${CUBEID_BUILDDIR:-.}
agent=$builddir/agent/cubeid-agent

D=$(mktemp -d /tmp/cubeid-install-prefix.XXXXXX) || exit 1
trap 'rm -rf "$D"' EXIT
TAP_DIR=$D/tap
mkdir -p "$TAP_DIR"
. "$(dirname "$0")/lib/tap.sh"
P=$D/prefix

mkdir -p "$D/build"
check "configure --prefix=P" 0 sh -c "cd '$D/build' && '$srcdir/configure' --prefix='$P'"
check "make install of the units and the sysusers file" 0 \
	make -C "$D/build" install-systemdsystemunitDATA install-sysusersDATA
unit=$P/lib/systemd/system/cubeid-agent.service
assert "the service is under P/lib/systemd/system" [ -f "$unit" ]
assert "the socket too" [ -f "$P/lib/systemd/system/cubeid-agent.socket" ]
assert "the sysusers file is under P/lib/sysusers.d" [ -f "$P/lib/sysusers.d/cubeid.conf" ]
outside=$(find "$D" -path "$D/build" -prune -o -path "$D/tap" -prune -o -path "$P" -prune -o \
	-type f -print)
assert "nothing was installed outside P" [ -z "$outside" ]
assert "ExecStart runs P/sbin/cubeid-agent with P/etc/cubeid/config.yaml" \
	grep -qx "ExecStart=$P/sbin/cubeid-agent --config $P/etc/cubeid/config.yaml --pin-file %d/pin" "$unit"
assert "the PIN credential is P/etc/cubeid/pin" grep -qx "LoadCredential=pin:$P/etc/cubeid/pin" "$unit"

rm -rf "$P" "$D/build"
mkdir -p "$D/build"
check "configure --prefix=P without units" 0 sh -c "cd '$D/build' && '$srcdir/configure' \
	--prefix='$P' --with-systemdsystemunitdir=no --with-sysusersdir=no"
check "make install of them installs none" 0 \
	make -C "$D/build" install-systemdsystemunitDATA install-sysusersDATA
assert "  (nothing under P)" [ ! -e "$P" ]

# this build's agent: its default entries path is under its sysconfdir
prefix=$(sed -n 's/^prefix = //p' "$builddir/Makefile")
sysconfdir=$(sed -n 's/^sysconfdir = //p' "$builddir/Makefile")
sysconfdir=${sysconfdir//'${prefix}'/$prefix}
printf 'trust_domain: cluster.local\n' >"$D/agent.yaml"
check "--check --offline without entries" 1 "$agent" --config "$D/agent.yaml" --check --offline
assert "the default entries are $sysconfdir/cubeid/entries.yaml" \
	grep -qF "no registration entries in $sysconfdir/cubeid/entries.yaml" "$TAP_DIR/err"

echo "1..$n"
[ "$fails" -eq 0 ]
