#!/bin/bash
# The CLI as an operator meets it, one table row per command line: its exit
# status (the EXIT STATUS table of cubeid(1)) and, for every command that
# reads state, its -o json output, parsed with python3's json module and
# checked with an expression on it.  Against a real agent (--dev, its own
# SoftHSM2 token) and a real local state directory (token dev-init, ca init).
#   - exit codes: 2 usage only; 3 token; 4 not found; 7 a token, SVID or
#     publication checked and refused, or picod rotate refused by the
#     agent; 1 an agent that cannot be reached (8, not ready, is proven by
#     tests/agent-status.sh and agent-token-outage.sh, which break a token);
#   - -o json on ca show|jwt-keys, entry list|show|check, svid fetch|verify,
#     jwt fetch|validate|verify, bundle show|fetch, picod public-key|token|
#     rotate|verify, cluster show|verify, status, token info|keys list;
#     RFC 3339 times; table headers and --no-headers;
#   - global options before the group; the agent's socket and the config
#     file as defaults; `help GROUP`, `version`, "did you mean";
#   - '-' for standard input and output; hidden old spellings (--json,
#     --key-type, --audience, --realm); one meaning per short flag;
#   - error messages that name the bad part (URI attribute, TTL minimum,
#     the tokens a module shows); svid watch --timeout after an update;
#   - bash and zsh completion from the same tables.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
agent=$builddir/agent/cubeid-agent

for tool in python3 openssl; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found"
		exit 77
	fi
done
[ -n "${CUBEID_SOFTHSM_MODULE:-}" ] && export CUBEID_PKCS11_MODULE=$CUBEID_SOFTHSM_MODULE
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_STATE_DIR CUBEID_CONFIG SPIFFE_ENDPOINT_SOCKET \
	SOFTHSM2_CONF
D=$(mktemp -d /tmp/cubeid-cli-table.XXXXXX) || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
S=$D/run/agent.sock
uid=$(id -u)
. "$(dirname "$0")/lib/tap.sh"

# j NAME WANT EXPR CMD...: exit WANT, and EXPR (python3, on d = the JSON
# document printed) is true
j() {
	local name=$1 want=$2 expr=$3

	shift 3
	check "$name" "$want" "$@"
	if python3 -c 'import json, re, sys
d = json.load(open(sys.argv[1]))
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
sys.exit(0 if eval(sys.argv[2]) else 1)' "$D/out" "$expr" 2>"$D/pyerr"; then
		ok "$name: -o json: $expr"
	else
		bad "$name: -o json: $expr"
		sed 's/^/    | /' "$D/out" "$D/pyerr" | head -20
	fi
}
# e NAME WANT TEXT CMD...: exit WANT, and stderr has TEXT
e() {
	local name=$1 want=$2 text=$3

	shift 3
	check "$name" "$want" "$@"
	assert "$name: says '$text'" grep -qF -- "$text" "$D/err"
}
# o NAME WANT TEXT CMD...: exit WANT, and stdout has TEXT
o() {
	local name=$1 want=$2 text=$3

	shift 3
	check "$name" "$want" "$@"
	assert "$name: prints '$text'" grep -qF -- "$text" "$D/out"
}

# ---- the agent, and a local state directory with a CA
printf 'entries: []\n' >"$D/agent-entries.yaml"
"$agent" --dev --state-dir "$D/agent" --socket "$S" --entries "$D/agent-entries.yaml" \
	>"$D/agent.out" 2>"$D/agent.err" &
pid=$!
for _ in $(seq 1 300); do
	[ -S "$S" ] && "$cubeid" status --socket "$S" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
L=$D/local
"$cubeid" token dev-init --state-dir "$L" >"$D/env" 2>"$D/err" || { cat "$D/err"; exit 1; }
assert "dev-init prints CUBEID_STATE_DIR" grep -qx "export CUBEID_STATE_DIR='$L'" "$D/env"
. "$D/env"
check "ca init" 0 "$cubeid" ca init -d example.org

cat >"$D/entries.yaml" <<EOY
entries:
  - name: me
    spiffe_id: spiffe://{td}/unix/uid/{unix:uid}
    selectors: [unix:uid:$uid]
EOY
E=(--entries "$D/entries.yaml")

# ---- usage (2), discovery, global options
check "no group: usage" 2 "$cubeid"
e "a misspelt group: did you mean" 2 "did you mean 'cubeid status'?" "$cubeid" stauts
e "a misspelt command: did you mean" 2 "did you mean 'cubeid ca show'?" "$cubeid" ca shwo
e "a misspelt option: did you mean" 2 "did you mean '--trust-domain'?" "$cubeid" ca init --trust-domian x
e "-o takes text or json" 2 "-o/--output is text or json, not 'yaml'" "$cubeid" ca show -o yaml
o "help GROUP is the group's help" 0 "usage: cubeid ca COMMAND" "$cubeid" help ca
o "help GROUP COMMAND" 0 "usage: cubeid ca show" "$cubeid" help ca show
o "version" 0 "cubeid " "$cubeid" version
o "options before the group: -v" 0 "trust domain" "$cubeid" -v --socket "$S" status
j "options before the group: --socket S -o json" 0 "d['trust_domain'] == 'cluster.local'" \
	"$cubeid" --socket "$S" -o json status
j "a global option the command does not take is ignored" 0 "d['trust_domain'] == 'example.org'" \
	"$cubeid" --socket "$S" -o json ca show
e "an unknown option before the group" 2 "unknown option '--bogus' before the group" \
	"$cubeid" --bogus status

# ---- defaults: the agent's socket, then the config file
if [ ! -e /run/cubeid/agent.sock ]; then
	e "no socket given: the agent's default" 1 "/run/cubeid/agent.sock" "$cubeid" status
fi
printf 'socket_path: %s\nstate_dir: %s\n' "$S" "$L" >"$D/config.yaml"
j "--config: its socket_path" 0 "d['health']['ready'] is True" \
	"$cubeid" --config "$D/config.yaml" status -o json
j "\$CUBEID_CONFIG: its state_dir" 0 "d['role'] == 'root'" \
	env -u CUBEID_STATE_DIR CUBEID_CONFIG="$D/config.yaml" "$cubeid" ca show -o json
e "--config that does not exist" 4 "cannot read the config file" \
	"$cubeid" --config "$D/none.yaml" status
j "\$SPIFFE_ENDPOINT_SOCKET" 0 "d['dev'] is True" \
	env SPIFFE_ENDPOINT_SOCKET="unix://$S" "$cubeid" status -o json

# ---- the agent's commands: -o json and exit codes
j "status -o json" 0 "d['health']['ready'] is True" "$cubeid" status --socket "$S" -o json
j "status --json (the old spelling)" 0 "'token' in d" "$cubeid" status --socket "$S" --json
j "svid fetch -o json" 0 "d[0]['spiffe_id'] == 'spiffe://cluster.local/unix/uid/$uid' and RFC3339.match(d[0]['not_after']) and d[0]['key_file'].endswith('/svid_key.pem')" \
	"$cubeid" svid fetch --socket "$S" --out "$D/svid" -o json
o "svid fetch --out -: PEM on standard output" 0 "-----BEGIN PRIVATE KEY-----" \
	"$cubeid" svid fetch --socket "$S" --out -
assert "... and no directory named '-'" [ ! -e ./- ]
j "svid fetch --out - -o json" 0 "d[0]['key'].startswith('-----BEGIN PRIVATE KEY')" \
	"$cubeid" svid fetch --socket "$S" --out - -o json
j "svid verify -o json" 0 "d['spiffe_id'].endswith('/unix/uid/$uid') and RFC3339.match(d['not_after'])" \
	"$cubeid" svid verify "$D/svid/svid.pem" --bundle "$D/svid/svid_bundle.pem" -o json
check "svid verify - (standard input)" 0 \
	sh -c '"$1" svid verify - --bundle "$2" <"$3"' - "$cubeid" "$D/svid/svid_bundle.pem" "$D/svid/svid.pem"
check "svid verify against another trust domain: rejected (7)" 7 \
	"$cubeid" svid verify "$D/svid/svid.pem" --bundle "$L/bundle.pem" -d example.org
j "jwt fetch -o json" 0 "d[0]['token'].count('.') == 2" "$cubeid" jwt fetch --socket "$S" --aud a -o json
tok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["token"])' "$D/out")
j "jwt validate -o json" 0 "d['claims']['aud'] in ('a', ['a'])" \
	"$cubeid" jwt validate "$tok" --aud a --socket "$S" -o json
check "jwt validate, wrong audience: rejected (7)" 7 "$cubeid" jwt validate "$tok" --aud b --socket "$S"
j "bundle fetch -o json" 0 "d['format'] == 'pem' and 'BEGIN CERTIFICATE' in d['bundle']" \
	"$cubeid" bundle fetch --socket "$S" -o json
j "bundle fetch --format jwks -o json" 0 "len(d['bundle']['keys']) >= 1" \
	"$cubeid" bundle fetch --socket "$S" --format jwks -o json
check "bundle fetch --out -" 0 "$cubeid" bundle fetch --socket "$S" --out -
assert "... is the PEM" grep -q "BEGIN CERTIFICATE" "$D/out"
j "picod public-key -o json" 0 "d['alg'] == 'RS256' and 'BEGIN PUBLIC KEY' in d['pem']" \
	"$cubeid" picod public-key --socket "$S" -o json
python3 -c 'import json,sys; open(sys.argv[2], "w").write(json.load(open(sys.argv[1]))["pem"])' \
	"$D/out" "$D/picod.pem"
j "picod token -o json" 0 "d['aud'] == 'picod:default/sb'" \
	"$cubeid" picod token --socket "$S" --session s1 --sandbox sb -o json
ptok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$D/out")
j "picod verify -o json, the key from standard input" 0 "d['session_id'] == 's1'" \
	sh -c '"$1" picod verify "$2" --sandbox sb --public-key - -o json <"$3"' - "$cubeid" "$ptok" "$D/picod.pem"
check "picod verify for another sandbox: rejected (7)" 7 \
	"$cubeid" picod verify "$ptok" --sandbox other --public-key "$D/picod.pem"
j "picod rotate --type ec-p256 --prepublish 1h -o json" 0 "RFC3339.match(d['active_from'])" \
	"$cubeid" picod rotate --socket "$S" --type ec-p256 --prepublish 1h -o json
check "picod rotate while a key waits: refused by the agent (7)" 7 \
	"$cubeid" picod rotate --socket "$S" --now
check "svid watch --timeout after an update: 0" 0 \
	"$cubeid" svid watch --socket "$S" --timeout 2s
assert "... saying the time ran out, not DeadlineExceeded" \
	bash -c "grep -Eq 'reached after [0-9]+ messages?' '$D/err' && ! grep -q DeadlineExceeded '$D/err'"

# ---- local state: -o json, RFC 3339, tables
j "ca show -o json" 0 "d['trust_domain'] == 'example.org' and RFC3339.match(d['not_after'])" \
	"$cubeid" ca show -o json
o "ca show: not after in RFC 3339" 0 "not after:    2" "$cubeid" ca show
j "ca jwt-keys -o json" 0 "d['keys'][0]['state'] == 'active' and RFC3339.match(d['keys'][0]['created'])" \
	"$cubeid" ca jwt-keys -o json
o "ca jwt-keys: a header" 0 "KID" "$cubeid" ca jwt-keys
check "ca jwt-keys --no-headers" 0 "$cubeid" ca jwt-keys --no-headers
assert "... has no header and one key line" \
	bash -c "[ \$(wc -l <'$D/out') = 1 ] && ! grep -q KID '$D/out' && grep -Eq ' active +[0-9]{4}-' '$D/out'"
e "ca sign --ttl 1s names the minimum" 2 "at least 1m" "$cubeid" ca sign --csr - --ttl 1s </dev/null
e "ca jwt-rotate --key-type (the old spelling)" 2 "unknown key type 'dsa'" \
	"$cubeid" ca jwt-rotate --key-type dsa
j "jwt verify -o json, the token from standard input" 0 "d['spiffe_id'].startswith('spiffe://example.org/')" \
	sh -c '"$1" jwt mint --spiffe-id spiffe://example.org/w --aud z | "$1" jwt verify - --aud z -o json' - "$cubeid"
j "bundle show -o json" 0 "d['format'] == 'spiffe' and d['bundle']['keys']" \
	"$cubeid" bundle show --format spiffe -o json
j "entry list -o json" 0 "d[0]['name'] == 'me' and d[0]['selectors'] == ['unix:uid:$uid']" \
	"$cubeid" entry list "${E[@]}" -o json
o "entry list: a header" 0 "NAME	SPIFFE-ID	SELECTORS	SOURCE" "$cubeid" entry list "${E[@]}"
check "entry list --no-headers" 0 "$cubeid" entry list "${E[@]}" --no-headers
assert "... has only the entry" bash -c "[ \$(wc -l <'$D/out') = 1 ] && grep -q '^me	' '$D/out'"
j "entry show -o json" 0 "d['x509_svid_ttl'] == 3600 and d['key'] == 'exportable'" \
	"$cubeid" entry show me "${E[@]}" -o json
j "entry check -o json" 0 "d['matched'] == 1 and d['entries'][0]['spiffe_id'] == 'spiffe://example.org/unix/uid/$uid'" \
	"$cubeid" entry check --pid $$ "${E[@]}" -d example.org -o json
check "entry show of a missing entry: 4" 4 "$cubeid" entry show nobody "${E[@]}"
j "token keys list -o json" 0 "any(k['label'].startswith('cubeid-') for k in d)" \
	"$cubeid" token keys list -o json
check "token keys list --no-headers" 0 "$cubeid" token keys list --no-headers
assert "... has no header" bash -c "! grep -q '^LABEL' '$D/out'"
j "token info --json (the old spelling)" 0 "d['token']['label'] == 'cubeid-dev'" \
	"$cubeid" token info --json
mkdir "$D/store"
check "cluster publish --node" 0 "$cubeid" cluster publish --node n1 --store-dir "$D/store"
j "cluster show -o json" 0 "d['nodes'][0]['node'] == 'n1' and RFC3339.match(d['nodes'][0]['expires']) and d['refused'] == []" \
	"$cubeid" cluster show --store-dir "$D/store" --bundle "$L/bundle.pem" -o json
j "cluster verify -o json" 0 "RFC3339.match(d['issued'])" \
	"$cubeid" cluster verify "$D/store/n1.jws" --bundle "$L/bundle.pem" -o json
check "cluster verify against other roots: rejected (7)" 7 \
	"$cubeid" cluster verify "$D/store/n1.jws" --bundle "$D/svid/svid_bundle.pem"

# ---- errors that name the bad part
e "a URI attribute RFC 7512 does not define" 2 "'tokn'" \
	"$cubeid" token keys list --token 'pkcs11:tokn=x'
e "no token matches: the tokens the module shows" 3 "the module shows the tokens 'cubeid-dev'" \
	"$cubeid" token keys list --token 'pkcs11:token=nosuch'
assert "... and where SoftHSM2 looks" grep -qF "SOFTHSM2_CONF=$SOFTHSM2_CONF" "$D/err"
e "the agent is unreachable: 1" 1 "cannot connect" "$cubeid" status --socket "$D/none.sock"

# ---- one meaning per short flag, across every command (from the man page)
"$cubeid" --help-man >"$D/man"
if python3 - "$D/man" <<'EOF'; then
import re, sys
seen = {}
for m in re.finditer(r'\\fB\\-(\w)\\fR, \\fB\\-\\-([a-z0-9\\-]+)\\fR', open(sys.argv[1]).read()):
    seen.setdefault(m.group(1), set()).add(m.group(2).replace('\\-', '-'))
bad = {k: v for k, v in seen.items() if len(v) > 1}
print("# short flags:", " ".join("-%s=--%s" % (k, "/".join(sorted(v))) for k, v in sorted(seen.items())))
sys.exit(1 if bad else 0)
EOF
	ok "every short flag means one long option"
else
	bad "a short flag means several long options"
fi

# ---- completion, from the same tables
for sh in bash zsh; do
	check "--help-completion=$sh" 0 "$cubeid" --help-completion=$sh
	cp "$D/out" "$D/completion.$sh"
done
assert "bash completion parses" bash -n "$D/completion.bash"
complete_words() { # the bash completion of a command line (last word: the one to complete)
	bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _cubeid_complete; echo "${COMPREPLY[*]}"' \
		- "$D/completion.bash" "$@"
}
assert "bash completes a group" bash -c "[[ ' $(complete_words cubeid sta) ' == *' status '* ]]"
assert "bash completes a command" bash -c "[[ ' $(complete_words cubeid ca sh) ' == *' show '* ]]"
assert "bash completes an option" bash -c "[[ ' $(complete_words cubeid ca jwt-rotate --ty) ' == *' --type '* ]]"
assert "bash skips an option's value" \
	bash -c "[[ ' $(complete_words cubeid --socket /x ca sh) ' == *' show '* ]]"
assert "zsh completion is a #compdef file" grep -qx '#compdef cubeid' "$D/completion.zsh"
if command -v zsh >/dev/null 2>&1; then
	assert "zsh completion parses" zsh -n "$D/completion.zsh"
fi
if [ -f "$builddir/cli/completion/cubeid" ]; then
	assert "the built completion is the one --help-completion prints" \
		cmp -s "$builddir/cli/completion/cubeid" "$D/completion.bash"
fi
check "--help-completion=fish: usage" 2 "$cubeid" --help-completion=fish

# ---- the exit status table is the one the codes follow
o "--help documents 7 (rejected)" 0 "7   rejected" "$cubeid" --help
assert "--help documents 8 (not ready)" grep -q "^  8   not ready" "$D/out"

echo "1..$n"
[ "$fails" -eq 0 ]
