#!/bin/bash
# `cubeid entry list|show|check` end to end: entries from a file and from a
# config file, `check --pid $$` attesting this very shell (its uid through
# the real /proc) against an entry that matches and one that does not, and
# errors that name the file and line.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid

[ -x "$cubeid" ] || { echo "FAIL: $cubeid not built" >&2; exit 1; }
D=$(mktemp -d) || exit 1
trap 'rm -rf "$D"' EXIT
uid=$(id -u)
other=$((uid + 4242))
. "$(dirname "$0")/lib/tap.sh"
has() { grep -qF -- "$1" "$D/out"; }
err_has() { grep -qF -- "$1" "$D/err"; }
not_err_has() { ! grep -qF -- "$1" "$D/err"; }

cat >"$D/entries.yaml" <<EOY
entries:
  - name: me
    spiffe_id: spiffe://{td}/unix/uid/{unix:uid}
    selectors: [unix:uid:$uid]
    x509_svid_ttl: 10m
    dns: [me.example]
  - name: someone-else
    spiffe_id: spiffe://{td}/unix/uid/$other
    selectors: [unix:uid:$other]
  - name: any-pod
    spiffe_id: spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}
    selectors: [k8s:sa]
EOY
E=(--entries "$D/entries.yaml")

check "list" 0 "$cubeid" entry list "${E[@]}"
assert "list shows every entry" has "someone-else"
assert "list shows the source" has "entries.yaml:2"

check "show" 0 "$cubeid" entry show me "${E[@]}"
assert "show the ttl" has "x509_svid_ttl: 600s"
assert "show dns" has "dns:           me.example"
check "show a missing entry" 4 "$cubeid" entry show nobody "${E[@]}"

check "check --pid \$\$ matches" 0 "$cubeid" entry check --pid $$ "${E[@]}" --trust-domain example.org
assert "its uid selector" has "unix:uid:$uid"
assert "the matching entry and its ID" has "match  me: spiffe://example.org/unix/uid/$uid"
assert "the other entry and why not" has "no     someone-else: lacks unix:uid:$other"
assert "a bare type missing" has "no     any-pod: lacks k8s:sa (any value)"
assert "the count" has "1 of 3 entries match"

# only a non-matching entry: exit status 1
cat >"$D/none.yaml" <<EOY
entries:
  - name: someone-else
    spiffe_id: spiffe://{td}/unix/uid/$other
    selectors: [unix:uid:$other]
EOY
check "check with no match" 1 "$cubeid" entry check --pid $$ --entries "$D/none.yaml"
assert "no match says so" has "0 of 1 entries match"

# defaults from a config file (entries path and trust domain)
cat >"$D/config.yaml" <<EOY
trust_domain: cfg.example
entries: $D/entries.yaml
EOY
check "check with --config" 0 "$cubeid" entry check --pid $$ --config "$D/config.yaml"
assert "the config's trust domain" has "spiffe://cfg.example/unix/uid/$uid"

# errors
printf 'entries:\n  - name: x\n    spife_id: spiffe://{td}/x\n' >"$D/bad.yaml"
check "a bad entries file" 1 "$cubeid" entry list --entries "$D/bad.yaml"
assert "names file, line and key" err_has "bad.yaml:3: unknown key 'spife_id' in an entry"
printf 'trust_domain: a\nsokcet_path: /x\n' >"$D/badcfg.yaml"
check "a bad config file" 1 "$cubeid" entry list --config "$D/badcfg.yaml"
assert "config error names the line" err_has "badcfg.yaml:2: unknown key 'sokcet_path'"
check "missing entries file" 4 "$cubeid" entry list --entries "$D/nope.yaml"
# without --pid: the entries alone.  me (uid U) and any-pod could both
# match a process in a pod running as U, with different IDs: a warning with
# the FILE:LINE of both, and exit status 1.
check "check without --pid: an overlap" 1 "$cubeid" entry check "${E[@]}"
assert "the overlap names both entries and their lines" err_has \
	"warning: $D/entries.yaml:2: entry 'me' and $D/entries.yaml:10: entry 'any-pod' can both match one workload"
assert "two uids never overlap" not_err_has "entry 'someone-else' can both"
assert "the count of overlaps" has "3 entries, 2 overlaps"
# the same overlap is warned of with --pid too, without changing its status
check "check --pid warns too" 0 "$cubeid" entry check --pid $$ "${E[@]}"
assert "the warning with --pid" err_has "entry 'me' and $D/entries.yaml:10: entry 'any-pod'"

cat >"$D/disjoint.yaml" <<EOY
entries:
  # the same template as the next entry gives, for this pod: one identity
  - name: router
    spiffe_id: spiffe://{td}/ns/sys/sa/router
    selectors: [k8s:ns:sys, k8s:sa:router]
  - name: every-pod
    spiffe_id: spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}
    selectors: [k8s:sa]
  # one label key, two values: exclusive
  - name: blue
    spiffe_id: spiffe://{td}/blue
    selectors: [k8s:pod-label:tier:blue, k8s:ns:apps]
  - name: green
    spiffe_id: spiffe://{td}/green
    selectors: [k8s:pod-label:tier:green, k8s:ns:apps]
  # another namespace than blue's
  - name: red
    spiffe_id: spiffe://{td}/red
    selectors: [k8s:ns:other, k8s:pod-label:tier:red, unix:uid:$uid]
EOY
check "check without --pid: no overlap" 1 "$cubeid" entry check --entries "$D/disjoint.yaml"
assert "a pinned template that gives the same ID is no overlap" not_err_has "entry 'router' and"
assert "one label key with two values is no overlap" not_err_has "entry 'blue' and $D/disjoint.yaml:13: entry 'green'"
assert "two namespaces are no overlap" not_err_has "entry 'red' and"
assert "but every-pod and blue overlap" err_has "entry 'every-pod' and $D/disjoint.yaml:10: entry 'blue'"
cat >"$D/clean.yaml" <<EOY
entries:
  - name: a
    spiffe_id: spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}
    selectors: [k8s:sa]
  - name: b
    spiffe_id: spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}
    selectors: [k8s:ns:x, k8s:sa]
    x509_svid_ttl: 5m
EOY
check "check a set without overlaps" 0 "$cubeid" entry check --entries "$D/clean.yaml"
assert "no warning" not_err_has "warning"
assert "says so" has "2 entries, 0 overlaps"
check "check with a bad pid" 2 "$cubeid" entry check --pid 12x "${E[@]}"
# a pid that does not exist (pid_max is at most 4194304)
check "check a pid that does not exist" 4 "$cubeid" entry check --pid 2147483647 "${E[@]}"

# the trust domain's own ID is not a workload's: refused with file and line
cat >"$D/root.yaml" <<EOY
entries:
  - name: root
    spiffe_id: spiffe://{td}
    selectors: [unix:uid:$uid]
EOY
check "an entry for the trust domain's own ID" 1 "$cubeid" entry list --entries "$D/root.yaml"
assert "the error names the file and line" err_has "root.yaml:3: bad spiffe_id"

echo "1..$n"
[ "$fails" -eq 0 ]
