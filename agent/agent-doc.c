/*
 * cubeid-agent's documentation: the option table (getopt, --help and the
 * man page), the config keys, the entry keys and the selector types, and
 * the prose of the three man pages.  See agent/agent-doc.h.
 *
 * Text fields are plain text: `code` becomes bold, "\n\n" a new paragraph,
 * and troff's special characters are escaped.  The prose sections (RAW) are
 * troff already.
 */
#include "config.h"

#include "agent/agent-doc.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

/* ------------------------------------------------------------ options */

#define OPT_CHECK   'C'
#define OPT_OFFLINE 'O'
#define OPT_STATE   'S'
#define OPT_TOKEN   't'
#define OPT_PIN     'p'
#define OPT_WTOKEN  'W'
#define OPT_X509TTL 'X'
#define OPT_JWTTTL  'J'
#define OPT_LOG     'l'
#define OPT_DEV     'D'
#define OPT_HTTP    'H'
#define OPT_VERSION 'V'
#define OPT_HELPMAN 'M'

const struct agent_opt_doc agent_opt_docs[] = {
        {'c', 'c', "config", required_argument, "FILE", "the config file (YAML)",
         "The config file (YAML; see cubeid.conf(5)).  An unknown key is an error that names "
         "the key and its line."},
        {OPT_CHECK, 0, "check", no_argument, NULL,
         "check what start checks (config, entries, PIN file,\ntoken, CA) and exit",
         "Check what start checks, without serving, and exit: 0 when all is good, 1 "
         "otherwise, with one error line per failure.  The config file; the registration "
         "entries it names (at least one, unless `--dev`); the PIN file (the agent's own, mode "
         "0600); the token (the module loads, the token is there, the PIN logs in); where "
         "workload keys go (the token if it makes exportable session keys, else the "
         "`--workload-token`, opened and tried); the CA in "
         "the state directory (valid now, its key on the token, of the configured trust "
         "domain); and the JWT keys.  With `--dev` and no token, the token and CA are made at "
         "start and not checked."},
        {OPT_OFFLINE, 0, "offline", no_argument, NULL,
         "with --check: the files only, not the token or\nthe CA (a config checked off its "
         "node)",
         "With `--check`: check the config file, the entries and the PIN file's mode only, "
         "not the token or the CA: for a config checked away from its node, such as a "
         "ConfigMap in CI."},
        {'s', 's', "socket", required_argument, "PATH",
         "the Workload API socket (default /run/cubeid/agent.sock;\n--dev: STATE-DIR/agent.sock)",
         "The Workload API socket.  Default `/run/cubeid/agent.sock`; with `--dev`, "
         "STATE-DIR/agent.sock.  Missing directories are created with mode 0755 and the socket "
         "gets mode 0666: workloads of any uid connect, and attestation decides what they "
         "get.  A socket another agent answers on is refused (the agent does not start); a "
         "stale one (nobody answers) is removed; anything else there is refused.  At exit the "
         "agent removes the socket only if it is still the one it made.  "
         "SPIRE's `/run/spire/sockets/agent.sock` works too.  Ignored when systemd passes a "
         "socket (LISTEN_FDS)."},
        {OPT_STATE, 0, "state-dir", required_argument, "DIR",
         "CA and JWT key state (default /var/lib/cubeid;\n--dev: $CUBEID_STATE_DIR or "
         "./cubeid-dev-state)",
         "The CA and JWT key state (ca.conf, ca.pem, bundle.pem, jwt.conf).  Default "
         "`/var/lib/cubeid`; with `--dev`, `$CUBEID_STATE_DIR` or `./cubeid-dev-state`."},
        {OPT_TOKEN, 0, "token", required_argument, "URI",
         "PKCS#11 URI of the token (--dev: a SoftHSM2 token\ncreated under the state directory)",
         "The RFC 7512 PKCS#11 URI of the token (default `$CUBEID_TOKEN`)."},
        {OPT_WTOKEN, 0, "workload-token", required_argument, "URI",
         "PKCS#11 URI of the token for exportable workload keys\n(default: the token, if it can "
         "make them)",
         "The RFC 7512 PKCS#11 URI of a second token where the agent generates the exportable "
         "workload keys of X.509-SVIDs, as session objects; the CA and JWT keys stay in "
         "`--token`.  Name its module with `module-path` and its PIN with `pin-source` in the "
         "URI.  Without it, the agent checks once at start whether `--token` can make an "
         "exportable session key, and uses it if so.  If it cannot (a TPM), the agent makes a "
         "throwaway SoftHSM2 token under `$RUNTIME_DIRECTORY` (systemd's RuntimeDirectory=, "
         "a tmpfs) or, without one, refuses to start."},
        {OPT_PIN, 0, "pin-file", required_argument, "FILE", "file holding the token's user PIN",
         "The file holding the token's user PIN.  The PIN is never taken from the command "
         "line.  Under systemd the unit passes it as a credential: `--pin-file %d/pin`."},
        {'d', 'd', "trust-domain", required_argument, "TD",
         "the trust domain (default cluster.local)",
         "The trust domain (default `cluster.local`).  It must be the CA's."},
        {'e', 'e', "entries", required_argument, "PATH",
         "registration entries: a YAML file or directory",
         "Registration entries (cubeid-entries(5)): a YAML file or a directory of *.yaml files "
         "(default `SYSCONFDIR/cubeid/entries.yaml`, `/etc/cubeid/entries.yaml` in a build "
         "configured with `--sysconfdir=/etc`; a missing file means no entries)."},
        {OPT_HTTP, 0, "http-address", required_argument, "ADDR",
         "serve /healthz, /readyz and /metrics over HTTP on\nHOST:PORT (e.g. 127.0.0.1:9090; "
         "default off)",
         "Serve `/healthz`, `/readyz` and `/metrics` over HTTP on HOST:PORT: an IPv4 address, "
         "[IPv6] or localhost (no name lookups), port 0 for any free port.  Default off.  See "
         "HTTP ENDPOINTS."},
        {OPT_X509TTL, 0, "x509-svid-ttl", required_argument, "DUR",
         "X.509-SVID lifetime (default 1h)",
         "X.509-SVID lifetime (default 1h).  An SVID is renewed at half its lifetime (plus or "
         "minus 10%), and every open FetchX509SVID stream of its holders gets the new state."},
        {OPT_JWTTTL, 0, "jwt-svid-ttl", required_argument, "DUR", "JWT-SVID lifetime (default 5m)",
         "JWT-SVID lifetime (default 5m, at most the JWT keys' max_ttl).  A JWT-SVID is reused "
         "for the same SPIFFE ID and audience set until half its lifetime has passed."},
        {OPT_LOG, 0, "log-level", required_argument, "LEVEL",
         "error, warning, notice, info or debug",
         "error, warning, notice (the default), info or debug."},
        {OPT_DEV, 0, "dev", no_argument, NULL, "development mode: NOT FOR PRODUCTION",
         "Development mode.  Without `--token`, a SoftHSM2 token is created (or reused) under "
         "STATE-DIR/softhsm with its PIN in a file next to it; a root CA is created on first "
         "start; and the invoking user is registered: a process of uid U gets "
         "spiffe://TD/unix/uid/U (selector unix:uid:U).  The agent prints a loud DEVELOPMENT "
         "MODE banner on standard error and the `SPIFFE_ENDPOINT_SOCKET=unix://...` line on "
         "standard output.  Its socket and state directory (STATE-DIR/agent.sock, and "
         "STATE-DIR as above) win over `socket_path` and `state_dir` in a config file, with a "
         "notice line that says so; `--socket` and `--state-dir` choose.  Not for "
         "production."},
        {'h', 'h', "help", no_argument, NULL, "this help", "Print the options."},
        {OPT_VERSION, 0, "version", no_argument, NULL, "print the version", "Print the version."},
        {OPT_HELPMAN, 0, "help-man", required_argument, "PAGE",
         "print a man page: cubeid-agent.8, cubeid.conf.5\nor cubeid-entries.5",
         "Print a man page in troff: `cubeid-agent.8`, `cubeid.conf.5` or "
         "`cubeid-entries.5` (how docs/man is made: `make update-man`)."},
        {0, 0, NULL, 0, NULL, NULL, NULL},
};

void
agent_doc_getopt(struct option *opts, char *optstring)
{
	const struct agent_opt_doc *d;
	size_t n = 0;
	char *p = optstring;

	for (d = agent_opt_docs; d->name != NULL && n < AGENT_OPTS_MAX - 1; d++, n++) {
		opts[n].name = d->name;
		opts[n].has_arg = d->has_arg;
		opts[n].flag = NULL;
		opts[n].val = d->val;
		if (d->short_name != 0) {
			*p++ = d->short_name;
			if (d->has_arg == required_argument)
				*p++ = ':';
		}
	}
	memset(&opts[n], 0, sizeof(opts[n]));
	*p = '\0';
}

void
agent_doc_usage(FILE *f)
{
	const struct agent_opt_doc *d;
	const char *h, *nl;
	char left[64];

	fputs("usage: cubeid-agent [--config FILE] [--check] [options]\n"
	      "       cubeid-agent --dev [--socket PATH] [--state-dir DIR] [--trust-domain TD]\n"
	      "\n"
	      "The cubeid node agent: serves the SPIFFE Workload API on a Unix socket, with\n"
	      "its keys in a PKCS#11 token.  Flags override the config file.\n"
	      "\n",
	      f);
	for (d = agent_opt_docs; d->name != NULL; d++) {
		if (d->short_name != 0)
			snprintf(left, sizeof(left), "-%c, --%s%s%s", d->short_name, d->name,
			         d->arg ? " " : "", d->arg ? d->arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", d->name, d->arg ? " " : "",
			         d->arg ? d->arg : "");
		fprintf(f, "  %-27s", left);
		if (strlen(left) > 26)
			fprintf(f, "\n  %-27s", "");
		for (h = d->help; (nl = strchr(h, '\n')) != NULL; h = nl + 1)
			fprintf(f, "%.*s\n  %-27s", (int)(nl - h), h, "");
		fprintf(f, "%s\n", h);
	}
	fputs("\n"
	      "Signals: SIGHUP reloads the config and the entries (entries also reload\n"
	      "when their file or directory changes); SIGTERM and SIGINT stop.\n"
	      "See cubeid-agent(8), cubeid.conf(5) and cubeid-entries(5).\n",
	      f);
}

/* ------------------------------------------------------------ troff */

static void
man_text(FILE *f, const char *s)
{
	const char *start = s;
	bool bol = true, bold = false;

	for (; *s != '\0'; s++) {
		if (bol && (*s == '.' || *s == '\''))
			fputs("\\&", f);
		bol = false;
		switch (*s) {
		case '\\':
			fputs("\\e", f);
			break;
		case '-':
			fputs("\\-", f);
			break;
		case '`':
			fputs(bold ? "\\fR" : "\\fB", f);
			bold = !bold;
			break;
		case '\n':
			if (s[1] == '\n') {
				fputs("\n.PP", f);
				s++;
			}
			fputc('\n', f);
			bol = true;
			break;
		case ' ':
			/* a sentence per line, as troff wants */
			if (s > start && s[1] == ' ' && s[-1] == '.') {
				fputc('\n', f);
				s++;
				bol = true;
				break;
			}
			fputc(' ', f);
			break;
		default:
			fputc(*s, f);
		}
	}
	if (bold)
		fputs("\\fR", f);
	fputc('\n', f);
}

static void
man_tp(FILE *f, const char *tag, const char *text)
{
	fputs(".TP\n\\fB", f);
	for (; *tag != '\0'; tag++)
		fputs(*tag == '-' ? "\\-" : (char[2]){*tag, 0}, f);
	fputs("\\fR\n", f);
	man_text(f, text);
}

static void
man_header(FILE *f, const char *name, int section, const char *title, const char *what)
{
	char up[64];
	size_t i;

	for (i = 0; name[i] != '\0' && i < sizeof(up) - 1; i++)
		up[i] = (char)toupper((unsigned char)name[i]);
	up[i] = '\0';
	fprintf(f,
	        ".\\\" Generated by 'cubeid-agent --help-man=%s.%d' from agent/agent-doc.c;\n"
	        ".\\\" do not edit: run 'make update-man'.\n"
	        ".TH %s %d \"\" \"cubeid %s\" \"%s\"\n"
	        ".SH NAME\n",
	        name, section, up, section, PACKAGE_VERSION, title);
	for (; *name != '\0'; name++)
		fputs(*name == '-' ? "\\-" : (char[2]){*name, 0}, f);
	fprintf(f, " \\- %s\n", what);
}

/* ------------------------------------------------------------ cubeid-agent(8) */

static const char agent_description[] =
        ".SH SYNOPSIS\n"
        ".B cubeid-agent\n"
        ".RB [ \\-\\-config\n"
        ".IR FILE ]\n"
        ".RB [ \\-\\-check ]\n"
        ".RI [ options ]\n"
        ".br\n"
        ".B cubeid-agent \\-\\-dev\n"
        ".RB [ \\-\\-socket\n"
        ".IR PATH ]\n"
        ".RB [ \\-\\-state\\-dir\n"
        ".IR DIR ]\n"
        ".RB [ \\-\\-trust\\-domain\n"
        ".IR TD ]\n"
        ".SH DESCRIPTION\n"
        ".B cubeid-agent\n"
        "serves the SPIFFE Workload API (gRPC over HTTP/2 on a Unix socket) to the\n"
        "processes of its node.\n"
        "Each caller is attested from kernel facts (SO_PEERCRED, /proc, cgroups and\n"
        "Kubernetes pod metadata), its selectors are matched against the\n"
        "registration entries (cubeid-entries(5)), and it receives X.509-SVIDs and\n"
        "JWT-SVIDs for the SPIFFE IDs the entries give it.\n"
        "The CA key and the JWT signing keys live in a PKCS#11 token and never leave\n"
        "it; workload keys are generated in the token as exportable session objects\n"
        "(on a TPM, which cannot make those, in a second token: see\n"
        ".BR \\-\\-workload\\-token ).\n"
        ".PP\n"
        "Existing SPIFFE clients work unchanged: go-spiffe, spiffe-helper, and\n"
        "anything that finds the socket through\n"
        ".BR SPIFFE_ENDPOINT_SOCKET=unix:///path .\n"
        ".SH OPTIONS\n"
        "Flags override the config file (cubeid.conf(5)), also after a reload.\n";

static const char agent_sections[] =
        ".SH WORKLOAD API\n"
        "Service\n"
        ".B SpiffeWorkloadAPI\n"
        "(no package):\n"
        ".TP\n"
        ".B FetchX509SVID\n"
        "A stream.\n"
        "The first message goes out as soon as the SVIDs are minted; a new full-state\n"
        "message follows every rotation, entry change and bundle change.\n"
        "A stream whose identity disappears on a reload ends with PermissionDenied.\n"
        ".TP\n"
        ".BR FetchX509Bundles \", \" FetchJWTBundles\n"
        "Streams of the trust domain's bundle: DER certificates, or a JWKS whose\n"
        "keys carry use jwt\\-svid and a kid.\n"
        ".TP\n"
        ".B FetchJWTSVID\n"
        "One JWT-SVID per identity of the caller, or only the one named by\n"
        "spiffe_id; an audience is required.\n"
        ".TP\n"
        ".B ValidateJWTSVID\n"
        "Returns the SPIFFE ID and the claims as a google.protobuf.Struct.\n"
        "A token that does not validate is InvalidArgument.\n"
        ".TP\n"
        ".BR FetchWITSVID \", \" FetchWITBundles\n"
        "Unimplemented.\n"
        ".PP\n"
        "Every request must carry the metadata\n"
        ".BR \"workload.spiffe.io: true\" ;\n"
        "without it the answer is InvalidArgument.\n"
        "A caller no entry matches gets PermissionDenied (\"no identity issued\");\n"
        "while the token cannot sign, the answer is Unavailable.\n"
        ".SS cubeid.Agent/Status\n"
        "An extra unary method on the same socket, for\n"
        ".BR \"cubeid status\" .\n"
        "The request is empty; the response is a protobuf message with one field,\n"
        ".BR \"string json = 1\" ,\n"
        "holding a JSON document: version, trust domain, token label and health (a\n"
        "signature with the CA key made for the request when the last token operation\n"
        "is older than 5 s: token.healthy, token.checked, token.error, token.why;\n"
        "token.unavailable, token.retry_in and token.recoveries while the token\n"
        "layer recovers from an outage), the\n"
        "CA's role and expiry, the number of entries, connected clients and open\n"
        "streams, cached SVIDs and the next rotation, readiness (as /readyz) and the\n"
        "counters of /metrics.\n"
        "Only root and the agent's own uid may call it (else PermissionDenied).\n"
        ".SS grpc.reflection.v1.ServerReflection, grpc.reflection.v1alpha.ServerReflection\n"
        "gRPC server reflection (ServerReflectionInfo, a bidirectional stream), so that\n"
        "generic clients such as\n"
        ".B grpcurl\n"
        "can list the services on the socket and describe them:\n"
        ".BR SpiffeWorkloadAPI ,\n"
        ".B cubeid.picod.v1.PicoD\n"
        "and reflection itself\n"
        "(cubeid.Agent/Status has no descriptor and is not listed).\n"
        "It reveals only the public schema, compiled into the agent, so it needs\n"
        "neither the security header nor an identity, and costs no attestation.\n"
        "A stream takes at most 256 requests of at most 4 KiB each; past either it\n"
        "ends with ResourceExhausted.\n"
        ".SH HTTP ENDPOINTS\n"
        "With\n"
        ".B http_address\n"
        "(or\n"
        ".BR \\-\\-http\\-address )\n"
        "the agent also answers HTTP GET and HEAD, on its event loop, with no\n"
        "request bodies, at most 64 connections and 32 KiB of request headers each.\n"
        "Nothing there is secret; bind it to loopback or a node-local address.\n"
        ".TP\n"
        ".B /healthz\n"
        "200 \"ok\" while the event loop runs (a liveness probe).\n"
        ".TP\n"
        ".B /readyz\n"
        "200 \"ready\" when the token answers (a signature with the CA key, every\n"
        "30 s, and every mint), the CA certificate is valid now and at least one\n"
        "registration entry is loaded; otherwise 503 and the reason.\n"
        ".TP\n"
        ".B /metrics\n"
        "The Prometheus text format (version 0.0.4):\n"
        ".B cubeid_svids_issued_total{type}\n"
        "(x509, jwt),\n"
        ".BR cubeid_svid_mint_failures_total{type} ,\n"
        ".BR cubeid_svid_rotations_total{type} ,\n"
        "the histogram\n"
        ".BR cubeid_svid_sign_duration_seconds{type} ,\n"
        ".BR cubeid_token_errors_total ,\n"
        ".BR cubeid_token_up ,\n"
        ".BR cubeid_connected_clients ,\n"
        ".BR cubeid_workload_streams ,\n"
        ".BR cubeid_grpc_protocol_errors_total ,\n"
        ".BR cubeid_grpc_stream_resets_total ,\n"
        ".BR cubeid_grpc_goaways_total ,\n"
        ".BR cubeid_grpc_connections_held_total ,\n"
        ".BR cubeid_ca_expiry_seconds ,\n"
        ".BR cubeid_ca_not_after_timestamp_seconds ,\n"
        ".BR cubeid_registration_entries ,\n"
        ".BR cubeid_svids_cached{type} ,\n"
        ".BR cubeid_ready ,\n"
        ".B cubeid_reloads_total\n"
        "and\n"
        ".BR cubeid_build_info .\n"
        ".TP\n"
        ".B /keycloak/jwks\n"
        "The trust domain's published JWT-SVID signing keys as a JWKS, each with use\n"
        "\"sig\", kid and alg: the jwks.url of a Keycloak client that authenticates\n"
        "with private_key_jwt (RFC 7523) signed by those keys in the token\n"
        "(cubeid oidc token \\-\\-assertion private\\-key\\-jwt).\n"
        "500 while the agent has no JWT keys.\n"
        ".TP\n"
        ".B /spiffe/bundle\n"
        "The SPIFFE bundle document: the X.509 roots and the JWT keys, with\n"
        "spiffe_sequence and spiffe_refresh_hint; the bundleEndpoint of Keycloak's\n"
        "SPIFFE identity provider, which checks jwt\\-spiffe client assertions\n"
        "(JWT-SVIDs) with it.\n"
        "Both serve public keys only, and follow a JWT key rotation and, with a\n"
        ".B cluster\n"
        "section, the other nodes' published keys.\n"
        ".SH SIGNALS\n"
        ".TP\n"
        ".B SIGHUP\n"
        "Reload the config file and the registration entries without dropping\n"
        "connections; open streams get the new state.\n"
        "A config or entries file that does not parse is reported and the old ones\n"
        "are kept.\n"
        "The trust domain, token, PIN file, module, state directory, socket and HTTP\n"
        "address need a restart: a change to one of them is refused with an error line\n"
        "that says so, and the running value is kept (the rest reloads).\n"
        "A renewed CA in the state directory (cubeid ca csr, ca sign, ca install) is\n"
        "checked (valid now, its key on the token, the same trust domain, chains to the\n"
        "roots the agent runs with) and swapped in; every X.509-SVID is minted again\n"
        "from it, and open streams get the new chain.\n"
        "A CA that fails a check is logged with why, and the running CA is kept.\n"
        "The entries also reload, the same way, when their file or directory\n"
        "changes (inotify on the directory, so a file replaced by rename is seen).\n"
        ".TP\n"
        ".BR SIGTERM \", \" SIGINT\n"
        "Stop accepting, end every stream with Unavailable (\"agent is shutting\n"
        "down\"), and exit 0.\n"
        ".SH SYSTEMD\n"
        "With\n"
        ".B LISTEN_FDS\n"
        "set (a\n"
        ".B .socket\n"
        "unit), the agent serves on the passed socket instead of creating one.\n"
        "It sends\n"
        ".B READY=1\n"
        "once the CA is loaded and the listener is up,\n"
        ".B STATUS=\n"
        "lines,\n"
        ".B WATCHDOG=1\n"
        "at half of\n"
        ".B WATCHDOG_USEC\n"
        "when the unit has a watchdog,\n"
        ".B RELOADING=1\n"
        "around a reload and\n"
        ".B STOPPING=1\n"
        "when it stops.\n"
        "Under systemd (JOURNAL_STREAM set), log lines carry journald priority\n"
        "prefixes.\n"
        "The units\n"
        ".B cubeid-agent.socket\n"
        "and\n"
        ".B cubeid-agent.service\n"
        "(contrib/systemd) run it as the user\n"
        ".B cubeid\n"
        "with one capability, CAP_SYS_PTRACE: attestation reads /proc/PID/exe of\n"
        "callers of every uid, which the kernel guards with a ptrace access check.\n"
        ".SH LOGGING AND AUDIT\n"
        "Logs go to standard error.\n"
        "Every issuance is one line:\n"
        ".PP\n"
        ".nf\n"
        "issued x509\\-svid spiffe_id=ID pid=P uid=U entry=NAME selectors=[...] serial=HEX\n"
        "issued jwt\\-svid spiffe_id=ID pid=P uid=U entry=NAME selectors=[...] aud=[...] "
        "jti=J exp=T\n"
        ".fi\n"
        ".PP\n"
        "A credential an entry's\n"
        ".B delivery\n"
        "writes to its directory is one line too, with the directory for the caller:\n"
        ".PP\n"
        ".nf\n"
        "issued x509\\-svid spiffe_id=ID delivery=DIR entry=NAME serial=HEX not_after=T\n"
        "issued jwt\\-svid spiffe_id=ID delivery=DIR entry=NAME aud=[...] jti=J exp=T\n"
        ".fi\n"
        ".PP\n"
        "Nothing secret is logged: no private keys, PINs or tokens (a JWT appears\n"
        "only by its jti).\n"
        ".SH SECURITY\n"
        "At start the agent sets RLIMIT_CORE to 0 and PR_SET_DUMPABLE to 0.\n"
        "Buffers holding workload private keys (PKCS#8) are mapped with\n"
        "MADV_DONTDUMP, locked where allowed, and wiped when freed.\n"
        "Token work (key generation, signing) runs in a small pool of worker\n"
        "threads, never on the event loop thread.\n"
        ".SH ENVIRONMENT\n"
        ".TP\n"
        ".B CUBEID_TOKEN\n"
        "The token's PKCS#11 URI when neither\n"
        ".B \\-\\-token\n"
        "nor the config names one.\n"
        ".TP\n"
        ".B CUBEID_STATE_DIR\n"
        "The state directory of\n"
        ".BR \\-\\-dev .\n"
        ".TP\n"
        ".B CUBEID_PKCS11_MODULE\n"
        "The PKCS#11 module when neither the token URI nor the config names one.\n"
        ".TP\n"
        ".BR LISTEN_FDS \", \" NOTIFY_SOCKET \", \" WATCHDOG_USEC \", \" JOURNAL_STREAM\n"
        "Set by systemd; see SYSTEMD.\n"
        ".SH FILES\n"
        "The paths under /etc are under the build's sysconfdir: /etc for a build\n"
        "configured with \\-\\-sysconfdir=/etc, as packages are\n"
        "(PREFIX/etc otherwise; the systemd unit names the same).\n"
        ".TP\n"
        ".I /run/cubeid/agent.sock\n"
        "The default socket.\n"
        ".TP\n"
        ".I /etc/cubeid/config.yaml\n"
        "The config file the systemd unit names (cubeid.conf(5)).\n"
        ".TP\n"
        ".I /etc/cubeid/entries.yaml\n"
        "The default registration entries (cubeid-entries(5)).\n"
        ".TP\n"
        ".I /etc/cubeid/pin\n"
        "The token's user PIN, which the systemd unit passes as a credential.\n"
        ".TP\n"
        ".I /var/lib/cubeid\n"
        "The default state directory.\n"
        ".SH EXIT STATUS\n"
        "0 on a clean stop (SIGTERM, SIGINT) or a good\n"
        ".BR \\-\\-check ;\n"
        "1 when the agent cannot start (token, CA, socket, HTTP address, config) or\n"
        ".B \\-\\-check\n"
        "fails; 2 for a bad command line.\n"
        ".SH EXAMPLES\n"
        ".nf\n"
        "cubeid\\-agent \\-\\-dev \\-\\-state\\-dir /tmp/cubeid \\-\\-http\\-address "
        "127.0.0.1:9090\n"
        "export SPIFFE_ENDPOINT_SOCKET=unix:///tmp/cubeid/agent.sock\n"
        "cubeid svid fetch \\-\\-out /tmp/certs\n"
        "cubeid jwt fetch \\-\\-aud my\\-service\n"
        "cubeid status\n"
        "curl \\-s http://127.0.0.1:9090/metrics\n"
        ".fi\n"
        ".SH SEE ALSO\n"
        ".BR cubeid (1),\n"
        ".BR cubeid.conf (5),\n"
        ".BR cubeid\\-entries (5),\n"
        ".BR systemd.exec (5)\n";

static void
man_agent(FILE *f)
{
	const struct agent_opt_doc *d;
	const char *a;

	man_header(f, "cubeid-agent", 8, "System Administration",
	           "node identity agent: the SPIFFE Workload API with keys in a PKCS#11 token");
	fputs(agent_description, f);
	for (d = agent_opt_docs; d->name != NULL; d++) {
		fputs(".TP\n", f);
		if (d->short_name != 0)
			fprintf(f, "\\fB\\-%c\\fR, ", d->short_name);
		fputs("\\fB\\-\\-", f);
		for (a = d->name; *a != '\0'; a++)
			fputs(*a == '-' ? "\\-" : (char[2]){*a, 0}, f);
		fputs("\\fR", f);
		if (d->arg != NULL)
			fprintf(f, " \\fI%s\\fR", d->arg);
		fputc('\n', f);
		man_text(f, d->man);
	}
	fputs(agent_sections, f);
}

/* ------------------------------------------------------------ cubeid.conf(5) */

struct key_doc {
	const char *key;
	const char *value; /* what it takes, with the default */
	const char *text;
};

static const struct key_doc config_docs[] = {
        {"trust_domain", "a trust domain name; default cluster.local",
         "The SPIFFE trust domain.  It must be the CA's (`cubeid ca init`)."},
        {"socket_path", "an absolute path; default /run/cubeid/agent.sock",
         "The Workload API socket (ignored when systemd passes one)."},
        {"state_dir", "an absolute path; default /var/lib/cubeid",
         "The CA and JWT key state: ca.conf, ca.pem, bundle.pem, jwt.conf.  No private key is "
         "ever written there."},
        {"token", "a PKCS#11 URI (quote it)",
         "The token holding the CA and JWT keys, e.g. \"pkcs11:token=cubeid\".  Default "
         "`$CUBEID_TOKEN`."},
        {"workload_token", "a PKCS#11 URI (quote it)",
         "The token where exportable workload keys are generated (as session objects), when "
         "`token` cannot make them (a TPM), e.g. \"pkcs11:token=workload?pin-source=file:/etc/"
         "cubeid/wl.pin\" with the SoftHSM2 module in a `module-path` attribute too.  Default: "
         "`token` if it can; else a throwaway SoftHSM2 token under `$RUNTIME_DIRECTORY`.  See "
         "`--workload-token`."},
        {"pin_file", "an absolute path",
         "The file holding the token's user PIN (never the PIN itself).  Owned by the agent's "
         "user, mode 0600 or stricter: --check and the start refuse it otherwise."},
        {"module", "an absolute path",
         "The PKCS#11 module, when the URI does not name one with module-path: e.g. "
         "/usr/lib/softhsm/libsofthsm2.so or "
         "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so."},
        {"entries",
         "an absolute path; default SYSCONFDIR/cubeid/entries.yaml (/etc/cubeid/entries.yaml with "
         "--sysconfdir=/etc)",
         "The registration entries: a file or a directory of *.yaml files (cubeid-entries(5)).  "
         "They reload when it changes."},
        {"x509_svid_ttl", "a duration; default 1h", "The X.509-SVID lifetime."},
        {"jwt_svid_ttl", "a duration; default 5m",
         "The JWT-SVID lifetime, at most the JWT keys' max_ttl."},
        {"log_level", "error, warning, notice, info or debug; default notice",
         "How much the agent logs."},
        {"http_address", "HOST:PORT; default off",
         "Where /healthz, /readyz and /metrics are served (cubeid-agent(8), HTTP ENDPOINTS): an "
         "IPv4 address, [IPv6] or localhost, no name lookups; port 0 picks a free one."},
        {"kubelet_pods_url", "an http:// or https:// URL",
         "The kubelet's pod list for attestation, e.g. http://127.0.0.1:10255/pods (read-only "
         "port) or https://127.0.0.1:10250/pods (secure port, with kubelet_token_file).  2 s "
         "timeout, no redirects, no proxy, at most 32 MiB, cached 5 s; fetched off the loop "
         "thread, and a caller waits for it at most 250 ms."},
        {"pod_info_file", "an absolute path",
         "A file holding the same PodList JSON, when the kubelet's list is not reachable."},
        {"kubelet_token_file", "an absolute path; default none",
         "A bearer token for the kubelet's secure port (https://127.0.0.1:10250/pods), e.g. "
         "the agent's ServiceAccount token /var/run/secrets/kubernetes.io/serviceaccount/token. "
         "Read again for every fetch (it rotates); sent only over https."},
        {"kubelet_ca_file", "an absolute path; default the system's CAs",
         "The CA that signed the kubelet's serving certificate, for an https:// "
         "kubelet_pods_url."},
        {"attest_sha256_max", "a size; default 64MiB",
         "Executables up to this size are hashed for the unix:sha256 selector, only when an "
         "entry uses it; 0 turns the selector off."},
        {"picod_issuer", "a string; default agentcube-router",
         "The iss claim of the PicoD tokens the agent signs (cubeid picod token, docs/picod.md)."},
        {"picod_token_ttl", "a duration from 1s to 5m; default 5m",
         "The lifetime of PicoD tokens; a caller may ask for less, never more."},
        {"grpc.max_message", "a size; default 4MiB", "The largest request message accepted."},
        {"grpc.max_streams", "a number; default 100", "Concurrent streams per connection."},
        {"grpc.max_connections", "a number; default 4096",
         "Connections on the socket; more are refused."},
        {"grpc.max_pending_output", "a size; default 8MiB",
         "Bytes queued for one connection before the slow client is dropped."},
        {"grpc.max_connections_per_uid", "a number; default 512",
         "Connections one local user (the uid the kernel gives for the caller) may hold; more "
         "from that user are refused, so that one user cannot take the socket from the "
         "others."},
        {"grpc.max_streams_per_uid", "a number; default 1024",
         "Concurrent streams one local user may hold over all its connections; more are "
         "refused (REFUSED_STREAM)."},
        {"grpc.first_request_timeout", "a duration; default 10s",
         "A connection that has not sent one whole request by then is closed; after its first "
         "request the idle timeout (5 minutes) applies."},
        {"cluster.store", "file or kubernetes; default off",
         "Trust across nodes (docs/cluster.md): where this node publishes its JWT public keys "
         "and reads every other node's.  The served JWT bundle is then the union of the valid "
         "publications."},
        {"cluster.dir", "an absolute path",
         "The file store: a directory shared by the nodes (NFS, a hostPath), one NODE.jws per "
         "node."},
        {"cluster.node", "a Kubernetes node name; default $CUBEID_NODE_NAME, else the host name",
         "This node's name in the store."},
        {"cluster.refresh", "a duration; default 30s",
         "How often the store is read (and the publication renewed when due).  The "
         "kubernetes store is listed once and then watched: a change is read at once, and "
         "each refresh reads the watch's copy, with no request, while the watch is up."},
        {"cluster.max_stale", "a duration; default off",
         "When the store has been out of reach this long, the other nodes' keys are dropped.  "
         "Without it they are kept until their publications expire."},
        {"cluster.publication_ttl", "a duration; default the JWT max_ttl + 5m",
         "How long this node's publication is valid; readers drop its keys after that.  At "
         "least the JWT max_ttl plus refresh."},
        {"cluster.jwks_file", "an absolute path",
         "Write the cluster's JWT-SVID keys (JWKS) here whenever they change (0644, atomic)."},
        {"cluster.picod_jwks_file", "an absolute path",
         "Write the cluster's PicoD keys (JWKS) here whenever they change (0644, atomic)."},
        {"cluster.k8s_api_server", "an https:// URL; default from KUBERNETES_SERVICE_HOST",
         "The Kubernetes store's API server."},
        {"cluster.k8s_namespace", "a namespace; default the pod's",
         "Where the cubeid-pub-NODE ConfigMaps live.  The agent's ServiceAccount needs list, "
         "watch, create and patch on ConfigMaps there."},
        {"cluster.k8s_token_file", "an absolute path; default the pod's ServiceAccount token",
         "Read before every request (projected tokens rotate)."},
        {"cluster.k8s_ca_file", "an absolute path; default the pod's ServiceAccount ca.crt",
         "The CA the API server's certificate must chain to."},
        {NULL, NULL, NULL},
};

static const char conf_description[] =
        ".SH SYNOPSIS\n"
        ".I /etc/cubeid/config.yaml\n"
        ".SH DESCRIPTION\n"
        ".B cubeid-agent \\-\\-config\n"
        ".I FILE\n"
        "reads one YAML mapping.\n"
        "Every key is optional; command-line flags override the file.\n"
        "The parser is strict: an unknown key, a duplicate key or a wrong value\n"
        "stops the agent with the file, the line and the key, e.g.\n"
        ".PP\n"
        ".nf\n"
        "/etc/cubeid/config.yaml:7: unknown key 'sokcet_path'\n"
        ".fi\n"
        ".PP\n"
        "The file is at most 1 MiB; exactly one YAML document.\n"
        ".B cubeid-agent \\-\\-check\n"
        "validates it.\n"
        ".SH VALUES\n"
        "A duration is digits and at most one unit s, m, h or d, unquoted, from 1 s\n"
        "to 10 years (90s, 5m, 1h).\n"
        "A size is digits, optionally KiB, MiB or GiB (or K, M, G), no space.\n"
        "A path is absolute; ~ or an empty value clears an optional one.\n"
        ".SH KEYS\n"
        "Nested keys are written here as\n"
        ".IR section . key ;\n"
        "in the file,\n"
        ".I grpc.max_streams\n"
        "is\n"
        ".B max_streams\n"
        "under a\n"
        ".B grpc:\n"
        "mapping.\n";

static const char conf_sections[] =
        ".SH EXAMPLE\n"
        ".nf\n"
        "trust_domain: cluster.local\n"
        "socket_path: /run/cubeid/agent.sock\n"
        "state_dir: /var/lib/cubeid\n"
        "token: \"pkcs11:token=cubeid\"\n"
        "module: /usr/lib/x86_64\\-linux\\-gnu/pkcs11/libtpm2_pkcs11.so\n"
        "pin_file: /etc/cubeid/pin\n"
        "entries: /etc/cubeid/entries.yaml\n"
        "x509_svid_ttl: 1h\n"
        "jwt_svid_ttl: 5m\n"
        "http_address: 127.0.0.1:9090\n"
        "kubelet_pods_url: http://127.0.0.1:10255/pods\n"
        "grpc:\n"
        "  max_connections: 4096\n"
        ".fi\n"
        ".SH SEE ALSO\n"
        ".BR cubeid\\-agent (8),\n"
        ".BR cubeid\\-entries (5),\n"
        ".BR cubeid (1)\n";

static void
man_conf(FILE *f)
{
	const struct key_doc *k;
	char text[1024];

	man_header(f, "cubeid.conf", 5, "File Formats", "cubeid-agent configuration file");
	fputs(conf_description, f);
	for (k = config_docs; k->key != NULL; k++) {
		snprintf(text, sizeof(text), "%s.  %s", k->value, k->text);
		text[0] = (char)toupper((unsigned char)text[0]);
		man_tp(f, k->key, text);
	}
	fputs(conf_sections, f);
}

/* ------------------------------------------------------------ cubeid-entries(5) */

static const struct key_doc entry_docs[] = {
        {"name", "optional",
         "Unique over all files; letters, digits and ._-:/@, at most 253.  Default: FILE:LINE "
         "of the entry."},
        {"spiffe_id", "required",
         "The ID, possibly a template (TEMPLATES).  Its trust domain is {td} or the agent's "
         "own; no other placeholder may stand there."},
        {"selectors", "required",
         "A list; all must match.  At least one (an entry with none would match everyone), at "
         "most 64."},
        {"x509_svid_ttl", "optional", "A duration (90s, 5m, 1h); default: the agent's."},
        {"jwt_svid_ttl", "optional", "A duration; default: the agent's."},
        {"dns", "optional", "DNS SANs for the X.509-SVID, at most 32."},
        {"key", "optional",
         "`exportable` (default: the workload receives its key) or `resident` (the key never "
         "leaves the token)."},
        {"hint", "optional", "The Workload API hint of the SVID."},
        {"picod_signer", "optional",
         "`true` lets the workload mint PicoD tokens; default `false`."},
        {"delivery", "optional",
         "A mapping: the agent itself writes this entry's SVIDs as files (DELIVERY)."},
        {NULL, NULL, NULL},
};

static const struct key_doc delivery_docs[] = {
        {"dir", "required",
         "An absolute directory; the files are replaced there as one atomic set.  Not a "
         "system directory itself (/, /etc, /bin, /sbin, /usr, /lib*, /boot, /dev, /proc, "
         "/sys, /var, /root, /run); a directory under one is fine.  No symlink in its path "
         "is followed (give the real path), and one whose parents another user could write "
         "is refused (see allow_unsafe_parent)."},
        {"x509", "true or false; default true", "Whether the X.509-SVID files are written."},
        {"svid_file", "a file name; default svid.pem", "The certificate chain, leaf first."},
        {"key_file", "a file name; default svid_key.pem", "The private key (PKCS#8 PEM)."},
        {"bundle_file", "a file name; default svid_bundle.pem", "The trust bundle (PEM)."},
        {"jwt_svids", "a list of {audience, file}", "JWT-SVID files, one per audience."},
        {"jwt_bundle_file", "a file name", "The JWT bundle (JWKS)."},
        {"cert_mode", "octal; default 0644", "Mode of the certificate and bundle files."},
        {"key_mode", "octal; default 0600",
         "Mode of the key file: 0600 or stricter (no group or other bits, no setuid, setgid "
         "or sticky)."},
        {"jwt_svid_mode", "octal; default 0600", "Mode of the JWT-SVID files."},
        {"jwt_bundle_mode", "octal; default 0644", "Mode of the JWT bundle file."},
        {"uid", "a number or user name", "Owner of the files; default the agent's."},
        {"gid", "a number or group name", "Group of the files; default the agent's."},
        {"signal", "SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGINT or SIGWINCH",
         "Sent after every update to pid or to pid_file's process.  Other signals (SIGKILL, "
         "SIGSTOP, ...) are refused."},
        {"pid", "a process id other than 1", "Where signal goes; init (1) is never signalled."},
        {"pid_file", "an absolute path", "A file holding the pid signal goes to."},
        {"command", "a list: an argument vector", "Run after every update, with no shell."},
        {"allow_unsafe_parent", "true or false; default false",
         "Write even when a user other than root and the agent could write a parent of dir "
         "(and so swap dir for a symlink between two writes)."},
        {NULL, NULL, NULL},
};

static const struct key_doc selector_docs[] = {
        {"unix:uid", "decimal", "The effective uid, from SO_PEERCRED."},
        {"unix:gid", "decimal", "The effective gid, from SO_PEERCRED."},
        {"unix:user", "a name", "The uid's name in the agent's passwd database."},
        {"unix:group", "a name", "The gid's name in the agent's group database."},
        {"unix:supplementary_gid", "decimal, one each",
         "Each supplementary group (at most 256), from /proc/PID/status."},
        {"unix:path", "a path",
         "The executable, from readlink /proc/PID/exe; only while the caller holds its "
         "connection close-on-exec."},
        {"unix:sha256", "hex",
         "SHA-256 of the executable, up to attest_sha256_max bytes; as unix:path, only while "
         "the caller holds its connection close-on-exec."},
        {"unix:seclabel", "an LSM label",
         "The AppArmor or SELinux label of the caller's socket, from SO_PEERSEC: that of the "
         "process that made it, fixed before connect."},
        {"systemd:id", "a unit name",
         "The last .service, .scope, .socket, .mount or .swap component of the cgroup path."},
        {"k8s:ns", "a namespace", "The pod's namespace (pod metadata)."},
        {"k8s:sa", "a service account", "The pod's service account."},
        {"k8s:pod-uid", "a UID", "The pod's UID (also from the cgroup path)."},
        {"k8s:pod-name", "a name", "The pod's name."},
        {"k8s:pod-label", "KEY:VALUE, one per label", "The pod's labels."},
        {"k8s:container-name", "a name",
         "The caller's container, from containerStatuses (also init and ephemeral ones)."},
        {"k8s:container-image", "an image", "The caller's container's image."},
        {"k8s:node-name", "a name", "The pod's node."},
        {NULL, NULL, NULL},
};

static const char entries_description[] =
        ".SH SYNOPSIS\n"
        ".I /etc/cubeid/entries.yaml\n"
        "or a directory of\n"
        ".I *.yaml\n"
        "files\n"
        ".SH DESCRIPTION\n"
        ".B cubeid-agent\n"
        "gives a caller on its socket the SPIFFE IDs of every registration entry\n"
        "whose selectors the caller has.\n"
        "The caller's selectors come from kernel facts only (attestation); nothing\n"
        "the client says counts.\n"
        ".PP\n"
        "The file is one YAML mapping with one key,\n"
        ".BR entries ,\n"
        "a list of entries.\n"
        "In a directory every *.yaml and *.yml file is loaded, in byte order of\n"
        "their names; names starting with a dot (a ConfigMap's ..data) are skipped.\n"
        "The parser is strict: an unknown key, a duplicate key or entry name, an\n"
        "unknown selector type, a value of the wrong type or an invalid SPIFFE ID is\n"
        "an error that names the file and the line.\n"
        "Limits: 32 MiB per file, 10,000 files per directory, 100,000 entries.\n"
        ".SH ENTRY KEYS\n";

static const char entries_sections[] =
        ".SH TEMPLATES\n"
        ".B spiffe_id\n"
        "may contain\n"
        ".B {td}\n"
        "(the agent's trust domain) and\n"
        ".BI { TYPE }\n"
        "for a single-valued selector type, such as\n"
        ".B {k8s:ns}\n"
        "or\n"
        ".BR {unix:uid} :\n"
        "the workload's value.\n"
        "A value must be exactly one SPIFFE path segment, and the result must be a\n"
        "valid SPIFFE ID in the agent's trust domain; otherwise the entry does not\n"
        "match that workload.\n"
        "So\n"
        ".B spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}\n"
        "with\n"
        ".B selectors: [k8s:sa]\n"
        "gives every pod its Istio-style ID.\n"
        ".SH EXAMPLE\n"
        ".nf\n"
        "entries:\n"
        "  \\- name: router\n"
        "    spiffe_id: spiffe://{td}/ns/agentcube\\-system/sa/agentcube\\-router\n"
        "    selectors: [k8s:ns:agentcube\\-system, k8s:sa:agentcube\\-router]\n"
        "    x509_svid_ttl: 1h\n"
        "    dns: [router.agentcube\\-system.svc]\n"
        "    picod_signer: true\n"
        "  \\- name: every\\-pod\n"
        "    spiffe_id: spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}\n"
        "    selectors: [k8s:sa]\n"
        ".fi\n"
        ".SH SEE ALSO\n"
        ".BR cubeid\\-agent (8),\n"
        ".BR cubeid.conf (5),\n"
        ".BR cubeid (1)\n"
        "(cubeid entry list, show, check)\n";

static void
man_entries(FILE *f)
{
	const struct key_doc *k;
	char text[1024];

	man_header(f, "cubeid-entries", 5, "File Formats",
	           "cubeid-agent registration entries and selectors");
	fputs(entries_description, f);
	for (k = entry_docs; k->key != NULL; k++) {
		snprintf(text, sizeof(text), "%s.  %s", k->value, k->text);
		text[0] = (char)toupper((unsigned char)text[0]);
		man_tp(f, k->key, text);
	}
	fputs(".SH DELIVERY\n"
	      "With\n"
	      ".BR delivery ,\n"
	      "the agent holds the entry's SVIDs itself (rotating at half-life) and writes\n"
	      "them into a directory, as spiffe\\-helper does but atomically as a set: a\n"
	      "reader never sees a certificate without its key.\n"
	      "Failed writes are retried with backoff.\n"
	      "Its keys:\n",
	      f);
	for (k = delivery_docs; k->key != NULL; k++) {
		snprintf(text, sizeof(text), "%s.  %s", k->value, k->text);
		text[0] = (char)toupper((unsigned char)text[0]);
		man_tp(f, k->key, text);
	}
	fputs(".SH SELECTORS\n"
	      "A selector is TYPE:VALUE; a type is NAMESPACE:NAME.\n"
	      "In an entry a selector matches exactly, except a bare type (no value, like\n"
	      ".BR k8s:sa ),\n"
	      "which matches a workload that has any selector of that type.\n",
	      f);
	for (k = selector_docs; k->key != NULL; k++) {
		snprintf(text, sizeof(text), "%s.  %s", k->value, k->text);
		text[0] = (char)toupper((unsigned char)text[0]);
		man_tp(f, k->key, text);
	}
	fputs(entries_sections, f);
}

int
agent_doc_man(FILE *f, const char *page)
{
	if (strcmp(page, "cubeid-agent.8") == 0)
		man_agent(f);
	else if (strcmp(page, "cubeid.conf.5") == 0)
		man_conf(f);
	else if (strcmp(page, "cubeid-entries.5") == 0)
		man_entries(f);
	else
		return -1;
	return 0;
}

const char *
agent_doc_config_key(size_t i)
{
	return i < sizeof(config_docs) / sizeof(config_docs[0]) ? config_docs[i].key : NULL;
}

const char *
agent_doc_entry_key(size_t i)
{
	return i < sizeof(entry_docs) / sizeof(entry_docs[0]) ? entry_docs[i].key : NULL;
}

const char *
agent_doc_delivery_key(size_t i)
{
	return i < sizeof(delivery_docs) / sizeof(delivery_docs[0]) ? delivery_docs[i].key : NULL;
}

const char *
agent_doc_selector_type(size_t i)
{
	return i < sizeof(selector_docs) / sizeof(selector_docs[0]) ? selector_docs[i].key : NULL;
}
