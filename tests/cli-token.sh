#!/bin/bash
# `cubeid token ...` end to end against a throwaway SoftHSM2 token made by
# tests/mktoken (no PIN on any argv: the token is initialised through the
# module, and the PIN lives in a 0600 file).  Checks output and exit codes,
# that public keys parse with OpenSSL, and that the PIN never shows up in an
# argv or in anything cubeid prints.
set -u
builddir=${CUBEID_BUILDDIR:-.}
cubeid=$builddir/cli/cubeid
mktoken=$builddir/tests/mktoken

for tool in openssl grep sed cmp; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool not found (install the Debian package that provides it)"
		exit 77
	fi
done
if [ ! -x "$cubeid" ] || [ ! -x "$mktoken" ]; then
	echo "FAIL: build cli/cubeid and tests/mktoken first (make check does)" >&2
	exit 1
fi

exports=$("$mktoken")
rc=$?
[ $rc -eq 77 ] && exit 77
if [ $rc -ne 0 ]; then
	echo "FAIL: tests/mktoken failed ($rc)" >&2
	exit 1
fi
eval "$exports"
trap 'rm -rf "$CUBEID_T_DIR"' EXIT
work=$CUBEID_T_DIR/cli
mkdir -p "$work"
PIN=$(cat "$CUBEID_T_PIN_FILE")
[ -n "$PIN" ] || { echo "FAIL: empty PIN file" >&2; exit 1; }

# Nothing from the caller's environment may choose the token or the PIN.
unset CUBEID_TOKEN CUBEID_PIN CUBEID_PIN_FILE CUBEID_PKCS11_MODULE CUBEID_LOG_LEVEL
T=(--token "$CUBEID_T_URI" --module "$CUBEID_T_MODULE" --pin-file "$CUBEID_T_PIN_FILE")

fails=0
tests=0
ok() {
	tests=$((tests + 1))
	echo "ok $tests - $1"
}
not_ok() {
	tests=$((tests + 1))
	fails=$((fails + 1))
	echo "not ok $tests - $1"
	[ -s "$work/err" ] && sed 's/^/    stderr| /' "$work/err"
	return 0
}

# run RC NAME ARGS...: run cubeid ARGS (stdin /dev/null), expect exit RC.
# Its output is kept in $work/out and $work/err, and logged with its argv.
run() {
	local want=$1 name=$2 got
	shift 2
	printf '%s\n' "$*" >>"$work/argv.log"
	"$cubeid" "$@" </dev/null >"$work/out" 2>"$work/err"
	got=$?
	cat "$work/out" "$work/err" >>"$work/output.log"
	if [ "$got" -eq "$want" ]; then
		ok "$name (exit $got)"
	else
		not_ok "$name: exit $got, expected $want"
	fi
}
# expect FILE PATTERN NAME: FILE matches the extended regex PATTERN.
expect() {
	if grep -Eq -- "$2" "$work/$1"; then
		ok "$3"
	else
		not_ok "$3: '$2' not in $1"
		sed 's/^/    '"$1"'| /' "$work/$1" | head -20
	fi
}
expect_not() {
	if grep -Eq -- "$2" "$work/$1"; then
		not_ok "$3: '$2' found in $1"
	else
		ok "$3"
	fi
}

# ---- info ----
run 0 "token info" token info "${T[@]}"
expect out "label: +$CUBEID_T_LABEL\$" "info shows the token label"
expect out "^  CKM_ECDSA " "info lists CKM_ECDSA"
expect out "login required: +yes" "info shows login required"
expect out "^  path: +/.*softhsm2\.so" "info shows the module path"
expect out "loaded with: +C_Get(Interface|FunctionList)" "info says how the module was loaded"
expect out "\[selected\]" "info marks the chosen slot"
run 0 "token info -o json" token info -o json --token "$CUBEID_T_URI" --module "$CUBEID_T_MODULE"
expect out '"name": "CKM_ECDSA"' "info --json lists CKM_ECDSA"
if command -v python3 >/dev/null 2>&1; then
	if python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["token"]["label"]==sys.argv[1]' \
		"$CUBEID_T_LABEL" <"$work/out"; then
		ok "info --json parses and names the token"
	else
		not_ok "info --json parses and names the token"
	fi
fi
run 3 "info with no matching token" token info --token "pkcs11:token=no-such-token" \
	--module "$CUBEID_T_MODULE"
expect out "^Slots" "info still shows the slots when no token matches"
expect err "no initiali[sz]ed token|no token matches" "info says no token matches"

# ---- generate each type ----
declare -A ID URI
for type in ec-p256 ec-p384 rsa-2048 rsa-3072; do
	run 0 "generate $type" token keys generate --type "$type" --label "k-$type" "${T[@]}"
	expect out "^type: +$type\$" "generate $type prints the type"
	expect out "^id: +[0-9a-f]{40}\$" "generate $type prints a SHA-1 id"
	expect out "^uri: +pkcs11:.*object=k-$type" "generate $type prints the URI"
	ID[$type]=$(sed -n 's/^id: *//p' "$work/out")
	URI[$type]=$(sed -n 's/^uri: *//p' "$work/out")
done
run 0 "generate --exportable -o json" token keys generate -t ec-p256 -l k-exp --exportable -o json \
	"${T[@]}"
expect out '"exportable": true' "an exportable key says so"
run 1 "generate with a label in use" token keys generate --type ec-p256 --label k-ec-p256 "${T[@]}"
expect err "already" "a label in use is refused"

# ---- list ----
run 0 "keys list" token keys list "${T[@]}"
for type in ec-p256 ec-p384 rsa-2048 rsa-3072; do
	expect out "^k-$type +$type +${ID[$type]} +token +no +pkcs11:" "list shows k-$type"
done
expect out "^k-exp +ec-p256 .* yes +pkcs11:" "list shows the exportable key"
expect out "^LABEL +TYPE +ID +STORAGE +EXPORTABLE +URI" "list has a header"
run 0 "keys list -o json" token keys list -o json "${T[@]}"
expect out "\"id\": \"${ID[rsa-3072]}\"" "list --json has the ids"
# The environment variables work as the options do.
CUBEID_TOKEN=$CUBEID_T_URI CUBEID_PIN_FILE=$CUBEID_T_PIN_FILE CUBEID_PKCS11_MODULE=$CUBEID_T_MODULE \
	run 0 "keys list from \$CUBEID_TOKEN and \$CUBEID_PIN_FILE" token keys list
expect out "^k-ec-p384 " "list through the environment shows the keys"

# ---- export-public ----
for type in ec-p256 ec-p384 rsa-2048 rsa-3072; do
	run 0 "export-public $type pem" token keys export-public --label "k-$type" --format pem \
		"${T[@]}"
	cp "$work/out" "$work/$type.pem"
	if openssl pkey -pubin -in "$work/$type.pem" -noout 2>"$work/err"; then
		ok "$type PEM parses with openssl pkey -pubin"
	else
		not_ok "$type PEM parses with openssl pkey -pubin"
	fi
	run 0 "export-public $type der (stdout)" token keys export-public --label "k-$type" \
		--format der "${T[@]}"
	cp "$work/out" "$work/$type.der"
	if openssl pkey -pubin -inform DER -in "$work/$type.der" -noout 2>"$work/err"; then
		ok "$type DER parses with openssl pkey -pubin -inform DER"
	else
		not_ok "$type DER parses with openssl pkey -pubin -inform DER"
	fi
	if openssl pkey -pubin -in "$work/$type.pem" -outform DER 2>/dev/null |
		cmp -s - "$work/$type.der"; then
		ok "$type DER and PEM hold the same key"
	else
		not_ok "$type DER and PEM hold the same key"
	fi
done
openssl pkey -pubin -in "$work/ec-p384.pem" -noout -text >"$work/text" 2>&1
expect text "P-384|secp384r1" "the ec-p384 key is on P-384"
openssl pkey -pubin -in "$work/rsa-3072.pem" -noout -text >"$work/text" 2>&1
expect text "3072 bit" "the rsa-3072 key has 3072 bits"
run 0 "export-public der --out FILE" token keys export-public --id "${ID[ec-p256]}" -f der \
	--out "$work/by-id.der" "${T[@]}"
if cmp -s "$work/by-id.der" "$work/ec-p256.der"; then
	ok "--id selects the same key, --out writes it"
else
	not_ok "--id selects the same key, --out writes it"
fi
# A key URI names its token: no --token needed.
run 0 "export-public --uri without --token" token keys export-public --uri "${URI[rsa-2048]}" \
	--module "$CUBEID_T_MODULE" --pin-file "$CUBEID_T_PIN_FILE"
if cmp -s "$work/out" "$work/rsa-2048.pem"; then
	ok "--uri selects the same key"
else
	not_ok "--uri selects the same key"
fi
run_jwk_rc=0
"$cubeid" token keys export-public -l k-ec-p256 -f jwk "${T[@]}" </dev/null >"$work/out" \
	2>"$work/err" || run_jwk_rc=$?
cat "$work/out" "$work/err" >>"$work/output.log"
case $run_jwk_rc in
0)
	expect out '"kty": *"EC"' "jwk export gives an EC JWK"
	# The JWK's point is the one in the DER key (its last 65 bytes: 04|x|y).
	if command -v python3 >/dev/null 2>&1; then
		if python3 -c '
import base64, json, sys
jwk = json.load(open(sys.argv[1]))
der = open(sys.argv[2], "rb").read()
b = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
assert jwk["crv"] == "P-256" and der[-65:] == b"\x04" + b(jwk["x"]) + b(jwk["y"])
' "$work/out" "$work/ec-p256.der" 2>"$work/err"; then
			ok "the JWK holds the same P-256 point as the DER key"
		else
			not_ok "the JWK holds the same P-256 point as the DER key"
		fi
	fi
	;;
5) expect err "JWK export is not available" "jwk export, not yet built, says so (exit 5)" ;;
*) not_ok "jwk export: exit $run_jwk_rc, expected 0 or 5" ;;
esac
run 2 "export-public with an unknown format" token keys export-public -l k-ec-p256 -f xml "${T[@]}"
expect err "unknown format 'xml'" "an unknown format is named"
run 2 "export-public with two selectors" token keys export-public -l k-ec-p256 \
	--id "${ID[ec-p256]}" "${T[@]}"
run 4 "export-public of a missing key" token keys export-public -l no-such-key "${T[@]}"
expect err "no-such-key" "a missing key is named"

# ---- delete ----
run 2 "delete without --yes and no terminal" token keys delete --label k-ec-p384 "${T[@]}"
expect err "without --yes" "delete explains it wants --yes"
run 0 "delete --yes" token keys delete --label k-ec-p384 --yes "${T[@]}"
expect out "deleted ec-p384 key 'k-ec-p384'" "delete says what it deleted"
run 0 "delete by --id -q" token keys delete --id "${ID[rsa-3072]}" --yes -q "${T[@]}"
if [ -s "$work/out" ]; then not_ok "-q prints nothing on delete"; else ok "-q prints nothing on delete"; fi
run 0 "keys list after delete" token keys list "${T[@]}"
expect_not out "^k-ec-p384 " "the deleted ec-p384 key is gone"
expect_not out "^k-rsa-3072 " "the deleted rsa-3072 key is gone"
expect out "^k-ec-p256 " "the other keys stay"
run 4 "delete a key that is gone" token keys delete --label k-ec-p384 --yes "${T[@]}"

# ---- on a terminal: delete asks, DER is refused (needs script(1)) ----
if command -v script >/dev/null 2>&1; then
	# run_tty RC NAME ANSWER ARGS...: run cubeid on a pseudo-terminal.
	run_tty() {
		local want=$1 name=$2 answer=$3 got cmd
		shift 3
		printf '%s\n' "$*" >>"$work/argv.log"
		printf -v cmd '%q ' "$cubeid" "$@"
		printf '%s\n' "$answer" | script -qec "$cmd" /dev/null >"$work/out" 2>"$work/err"
		got=$?
		cat "$work/out" "$work/err" >>"$work/output.log"
		if [ "$got" -eq "$want" ]; then
			ok "$name (exit $got)"
		else
			not_ok "$name: exit $got, expected $want"
		fi
	}
	run 0 "generate a key to delete on a terminal" token keys generate -t ec-p256 -l k-tty "${T[@]}"
	run_tty 1 "delete on a terminal, answered no" n token keys delete -l k-tty "${T[@]}"
	expect out "delete ec-p256 key 'k-tty' .*\[y/N\]" "delete on a terminal asks first"
	run 0 "the key is still there after no" token keys export-public -l k-tty "${T[@]}"
	run_tty 0 "delete on a terminal, answered yes" y token keys delete -l k-tty "${T[@]}"
	run 4 "the key is gone after yes" token keys export-public -l k-tty "${T[@]}"
	run_tty 2 "DER to a terminal is refused" "" token keys export-public -l k-ec-p256 -f der \
		"${T[@]}"
	expect out "not writing binary DER to a terminal" "DER to a terminal says why"
else
	echo "# SKIP (partly): script(1) not found, the terminal checks did not run"
fi

# ---- dev-init: a development token, and the assignments to use it ----
run 0 "dev-init" token dev-init --dir "$work/dev/state" --label dev-tok --module "$CUBEID_T_MODULE"
expect out "^export CUBEID_TOKEN='pkcs11:token=dev-tok'\$" "dev-init prints CUBEID_TOKEN"
expect out "^export CUBEID_PIN_FILE='$work/dev/state/user.pin'\$" "dev-init prints CUBEID_PIN_FILE"
expect out "^export SOFTHSM2_CONF='$work/dev/state/softhsm2.conf'\$" "dev-init prints SOFTHSM2_CONF"
cp "$work/out" "$work/dev.env"
if [ "$(stat -c %a "$work/dev/state/user.pin")" = 600 ]; then
	ok "the dev PIN file is mode 0600"
else
	not_ok "the dev PIN file is mode 0600"
fi
DEV_PIN=$(cat "$work/dev/state/user.pin")
(
	eval "$(cat "$work/dev.env")"
	export CUBEID_PKCS11_MODULE=$CUBEID_T_MODULE
	run 0 "generate on the dev token" token keys generate -t ec-p256 -l dev-key
	run 0 "dev-init again reuses the token" token dev-init --dir "$work/dev/state" --label dev-tok
	run 0 "list on the reused dev token" token keys list
	expect out "^dev-key " "the reused dev token still has its key"
	exit $fails
) || fails=$((fails + $?))
tests=$((tests + 4))
if grep -qF -- "$DEV_PIN" "$work/output.log"; then
	not_ok "the dev token PIN appeared in cubeid's output"
else
	ok "the dev token PIN never appeared in cubeid's output"
fi

# ---- --help and --version everywhere ----
version_re="^cubeid [0-9]+\.[0-9]+"
run 0 "cubeid --help" --help
expect out "^usage: cubeid \[options\] GROUP COMMAND" "cubeid --help has a usage line"
expect out "^  token " "cubeid --help lists the token group"
run 0 "cubeid --version" --version
expect out "$version_re" "cubeid --version prints the version"
for cmd in "token" "token keys" "token info" "token keys list" "token keys generate" \
	"token keys delete" "token keys export-public" "token dev-init"; do
	# shellcheck disable=SC2086
	run 0 "cubeid $cmd --help" $cmd --help
	expect out "^usage: cubeid $cmd" "cubeid $cmd --help starts with its usage"
	# shellcheck disable=SC2086
	run 0 "cubeid $cmd --version" $cmd --version
	expect out "$version_re" "cubeid $cmd --version prints the version"
done
run 0 "generate --help lists its options" token keys generate --help
expect out "--type TYPE" "generate --help lists --type"
expect out "--pin-file FILE" "generate --help lists the common options"

# ---- usage errors: exit 2 with a message ----
run 2 "a bad --type" token keys generate --type ec-p521 --label x "${T[@]}"
expect err "unknown key type 'ec-p521'" "a bad --type is named"
expect err "try 'cubeid token keys generate --help'" "a usage error points at --help"
run 2 "a missing --label" token keys generate --type ec-p256 "${T[@]}"
expect err "--label is required" "a missing --label is named"
run 2 "an unknown group" frobnicate list
expect err "'frobnicate' is not a cubeid command group" "an unknown group is named"
run 2 "an unknown command" token frob
expect err "'frob' is not a 'cubeid token' command" "an unknown command is named"
run 2 "an unknown option" token keys list --frob "${T[@]}"
expect err "unknown option '--frob'" "an unknown option is named"
run 2 "an option without its argument" token keys generate --type ec-p256 --label
run 2 "a group without a command" token keys
run 2 "no arguments at all"

# ---- token and login errors: exit 3 ----
printf 'not-the-pin-4711\n' >"$work/wrong.pin"
chmod 600 "$work/wrong.pin"
run 3 "a wrong PIN file" token keys list --token "$CUBEID_T_URI" --module "$CUBEID_T_MODULE" \
	--pin-file "$work/wrong.pin"
expect err "rejected the PIN" "a wrong PIN says the token rejected it"
expect_not err "not-the-pin-4711" "the wrong PIN is not printed"
run 3 "a missing PIN file" token keys list --token "$CUBEID_T_URI" --module "$CUBEID_T_MODULE" \
	--pin-file "$work/no-such.pin"
expect err "cannot read PIN file" "a missing PIN file is named"
run 3 "no PIN at all" token keys list --token "$CUBEID_T_URI" --module "$CUBEID_T_MODULE"
expect err "PIN" "a missing PIN is explained"
run 3 "a module that does not exist" token keys list --token "$CUBEID_T_URI" \
	--module "$work/no-such-module.so" --pin-file "$CUBEID_T_PIN_FILE"

# ---- bad URIs: non-zero with the URI error ----
run 2 "a malformed URI" token keys list --token "pkcs11:token=%zz" --module "$CUBEID_T_MODULE" \
	--pin-file "$CUBEID_T_PIN_FILE"
expect err "URI" "a malformed URI is reported as a URI error"
run 2 "not a pkcs11: URI" token info --token "https://example.invalid/" \
	--module "$CUBEID_T_MODULE"
expect err "URI" "a non-pkcs11 URI is reported as a URI error"
# pin-value in the URI is refused, and the PIN in it is not echoed.
run 2 "a URI with pin-value" token keys list --token "$CUBEID_T_URI?pin-value=secret-4712" \
	--module "$CUBEID_T_MODULE"
expect err "pin-value" "pin-value in a URI is refused"
expect_not err "secret-4712" "the pin-value is not echoed"
expect_not out "secret-4712" "the pin-value is not printed"

# ---- the PIN never appears ----
if grep -qF -- "$PIN" "$work/argv.log"; then
	not_ok "the PIN was on a cubeid command line"
else
	ok "no cubeid command line carried the PIN"
fi
if grep -qF -- "$PIN" "$work/output.log"; then
	not_ok "the PIN appeared in cubeid's output"
else
	ok "the PIN never appeared in cubeid's output"
fi

echo "1..$tests"
if [ $fails -ne 0 ]; then
	echo "FAIL: $fails of $tests checks failed"
	exit 1
fi
exit 0
