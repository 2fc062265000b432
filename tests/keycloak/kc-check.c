/*
 * kc-check: the C side of tests/keycloak/run.sh, run against a real
 * Keycloak ($KC_URL) with tokens the script got from it (DIR/NAME.tok).
 *
 *   kc-check suite DIR         verification, roles, policy, JWKS cache,
 *                              realm isolation, RLAC (TAP output)
 *   kc-check client SECRET-FILE
 *                              client_credentials through the token cache
 *                              (refresh ahead of expiry), as agentcube-sdk
 *   kc-check downstream AUD TOKEN-FILE
 *                              a WorkloadManager / PicoD stand-in: its own
 *                              verifier (own JWKS cache) for audience AUD;
 *                              prints "sub: S" and the roles, exit 0, or
 *                              the reason and exit 1
 */
#include "config.h"

#include <cubeid/oidc.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int n, fails;

static void
ok(int cond, const char *fmt, ...)
{
	va_list ap;

	n++;
	printf("%s %d - ", cond ? "ok" : "not ok", n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		fails++;
	fflush(stdout);
}

static char *
slurp(const char *dir, const char *name)
{
	char path[4096], *buf;
	FILE *f;
	long len;

	if (dir != NULL)
		snprintf(path, sizeof(path), "%s/%s.tok", dir, name);
	else
		snprintf(path, sizeof(path), "%s", name);
	if ((f = fopen(path, "r")) == NULL) {
		fprintf(stderr, "kc-check: cannot open %s\n", path);
		exit(2);
	}
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)len + 1);
	if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len)
		exit(2);
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf;
}

static cubeid_oidc_verifier *
verifier(const char *realm, const char *aud, const char *jwks_uri)
{
	struct cubeid_oidc_verifier_opts o = {0};
	cubeid_oidc_verifier *v = NULL;
	char *iss = NULL;

	if (cubeid_oidc_keycloak_issuer(getenv("KC_URL"), realm, &iss) != CUBEID_OK)
		exit(2);
	o.issuer = iss;
	o.jwks_uri = jwks_uri;
	o.audiences = &aud;
	o.n_audiences = aud ? 1 : 0;
	o.min_refresh_gap = 5;
	o.max_stale = 120;
	if (cubeid_oidc_verifier_new(&o, &v) != CUBEID_OK)
		exit(2);
	free(iss);
	return v;
}

/* Verify DIR/name.tok with v; return claims or NULL (and *rc). */
static cubeid_oidc_claims *
verify(cubeid_oidc_verifier *v, const char *dir, const char *name, int *rc)
{
	cubeid_oidc_claims *c = NULL;
	char *t = slurp(dir, name);

	*rc = cubeid_oidc_verify(v, t, strlen(t), 0, &c);
	free(t);
	return c;
}

static int
decide(cubeid_oidc_verifier *v, const cubeid_oidc_policy *p, const char *dir, const char *who,
       const char *method, const char *path, char **www)
{
	struct cubeid_oidc_decision d;
	char hdr[20000];
	char *t = NULL;
	int st;

	if (who != NULL) {
		t = strcmp(who, "garbage") == 0 ? strdup("abc.def.ghi") : slurp(dir, who);
		snprintf(hdr, sizeof(hdr), "Bearer %s", t);
	}
	if (cubeid_oidc_authorize(v, p, "agentcube", method, path, who ? hdr : NULL, 0, &d) !=
	    CUBEID_OK)
		exit(2);
	st = d.status;
	if (www != NULL)
		*www = d.www_authenticate ? strdup(d.www_authenticate) : NULL;
	cubeid_oidc_decision_clear(&d);
	free(t);
	return st;
}

static const char policy_text[] =
        "# the Router's endpoints (AgentCube) and the role each needs\n"
        "GET    /healthz                          -\n"
        "POST   /v1/namespaces/*/code-interpreters/*/invocations/**  sandbox:invoke\n"
        "GET    /v1/sandboxes                     sandbox:invoke\n"
        "POST   /v1/sandboxes                     sandbox:manage\n"
        "DELETE /v1/sandboxes/*                   sandbox:manage\n"
        "*      /admin/**                         admin\n";

static int
suite(const char *dir)
{
	cubeid_oidc_verifier *v = verifier("agentcube", NULL, NULL), *vb, *va, *vdown;
	cubeid_oidc_claims *alice, *bob, *carol, *root, *nobody, *sa, *c;
	cubeid_oidc_policy *p = NULL;
	char hash[CUBEID_RLAC_HASH_LEN + 1], *www = NULL, *t;
	unsigned long f0;
	int rc, st;

	alice = verify(v, dir, "alice", &rc);
	ok(rc == 0 && alice != NULL, "alice's token verifies (%s)", cubeid_strerror(rc));
	ok(cubeid_oidc_verifier_fetches(v) == 1 && cubeid_oidc_verifier_key_count(v) >= 1,
	   "one JWKS fetch (discovery + certs) for the first token (%lu fetches, %zu keys)",
	   cubeid_oidc_verifier_fetches(v), cubeid_oidc_verifier_key_count(v));
	bob = verify(v, dir, "bob", &rc);
	ok(rc == 0, "bob's token verifies");
	carol = verify(v, dir, "carol", &rc);
	ok(rc == 0, "carol's token verifies");
	root = verify(v, dir, "root", &rc);
	ok(rc == 0, "root's token verifies");
	nobody = verify(v, dir, "nobody", &rc);
	ok(rc == 0, "nobody's token verifies");
	sa = verify(v, dir, "sdk-sa", &rc);
	ok(rc == 0, "the agentcube-sdk service account's token verifies");
	ok(cubeid_oidc_verifier_fetches(v) == 1, "warm cache: still one fetch after six tokens");
	if (alice == NULL || bob == NULL || carol == NULL || root == NULL || nobody == NULL ||
	    sa == NULL)
		return 1;

	ok(cubeid_oidc_claims_has_role(alice, "sandbox:invoke") &&
	           !cubeid_oidc_claims_has_role(alice, "sandbox:manage") &&
	           !cubeid_oidc_claims_has_role(alice, "admin"),
	   "alice: sandbox:invoke only");
	ok(cubeid_oidc_claims_has_role(carol, "sandbox:manage") &&
	           cubeid_oidc_claims_has_role(carol, "sandbox:invoke") &&
	           !cubeid_oidc_claims_has_role(carol, "admin"),
	   "carol: sandbox:manage, and sandbox:invoke through the composite");
	ok(cubeid_oidc_claims_has_role(root, "admin") &&
	           cubeid_oidc_claims_has_role(root, "sandbox:manage") &&
	           cubeid_oidc_claims_has_role(root, "sandbox:invoke"),
	   "root: admin expands to sandbox:manage and sandbox:invoke");
	ok(!cubeid_oidc_claims_has_role(nobody, "sandbox:invoke"), "nobody: no sandbox role");
	ok(cubeid_oidc_claims_has_role(sa, "sandbox:invoke"), "service account: sandbox:invoke");
	ok(strcmp(cubeid_oidc_claims_sub(alice), cubeid_oidc_claims_sub(bob)) != 0,
	   "alice and bob have different subs");

	/* aud and azp */
	va = verifier("agentcube", "agentcube-router", NULL);
	c = verify(va, dir, "alice", &rc);
	ok(rc == 0, "aud agentcube-router (the SDK's audience mapper) accepted");
	cubeid_oidc_claims_free(c);
	cubeid_oidc_verifier_free(va);
	va = verifier("agentcube", "picod", NULL);
	c = verify(va, dir, "alice", &rc);
	ok(rc == CUBEID_ERR_JWT_AUDIENCE && c == NULL,
	   "a verifier for aud picod refuses the SDK token: %s", cubeid_strerror(rc));
	cubeid_oidc_verifier_free(va);
	{
		struct cubeid_oidc_verifier_opts o = {0};
		char *iss = NULL;

		cubeid_oidc_keycloak_issuer(getenv("KC_URL"), "agentcube", &iss);
		o.issuer = iss;
		o.azp = "agentcube-router";
		cubeid_oidc_verifier_new(&o, &va);
		c = verify(va, dir, "alice", &rc);
		ok(rc == CUBEID_ERR_JWT_CLAIM,
		   "azp agentcube-router required: the SDK token is refused");
		cubeid_oidc_verifier_free(va);
		o.azp = "agentcube-sdk";
		cubeid_oidc_verifier_new(&o, &va);
		c = verify(va, dir, "alice", &rc);
		ok(rc == 0, "azp agentcube-sdk required: accepted");
		cubeid_oidc_claims_free(c);
		cubeid_oidc_verifier_free(va);
		free(iss);
	}

	/* the policy table and the 401/403 outcomes */
	t = strdup(policy_text);
	ok(cubeid_oidc_policy_parse(t, strlen(t), &p, NULL) == 0 &&
	           cubeid_oidc_policy_count(p) == 6,
	   "the Router policy table parses (6 rules)");
	free(t);
	/* decide first: an argument list has no order of evaluation */
	st = decide(v, p, dir, NULL, "GET", "/v1/sandboxes", &www);
	ok(st == 401 && www != NULL && strcmp(www, "Bearer realm=\"agentcube\"") == 0,
	   "no token: 401, WWW-Authenticate: %s", www ? www : "(none)");
	free(www);
	st = decide(v, p, dir, "garbage", "GET", "/v1/sandboxes", &www);
	ok(st == 401 && www != NULL && strstr(www, "error=\"invalid_token\"") != NULL,
	   "garbage token: 401, WWW-Authenticate: %s", www ? www : "(none)");
	free(www);
	st = decide(v, p, dir, "nobody", "GET", "/v1/sandboxes", &www);
	ok(st == 403 && www != NULL && strstr(www, "insufficient_scope") != NULL,
	   "nobody lists sandboxes: 403 (%s)", www ? www : "(none)");
	free(www);
	ok(decide(v, p, dir, "alice", "GET", "/v1/sandboxes", NULL) == 200, "alice lists: 200");
	ok(decide(v, p, dir, "alice", "POST",
	          "/v1/namespaces/default/code-interpreters/ci/invocations/run", NULL) == 200,
	   "alice invokes: 200");
	ok(decide(v, p, dir, "alice", "POST", "/v1/sandboxes", NULL) == 403, "alice creates: 403");
	ok(decide(v, p, dir, "carol", "POST", "/v1/sandboxes", NULL) == 200,
	   "carol (sandbox:manage) creates: 200");
	ok(decide(v, p, dir, "carol", "DELETE", "/v1/sandboxes/s1", NULL) == 200,
	   "carol deletes: 200");
	ok(decide(v, p, dir, "carol", "GET", "/admin/users", NULL) == 403, "carol on /admin: 403");
	ok(decide(v, p, dir, "root", "GET", "/admin/users", NULL) == 200,
	   "root (admin) on /admin: 200");
	ok(decide(v, p, dir, "root", "DELETE", "/v1/sandboxes/s1", NULL) == 200,
	   "root deletes through admin > sandbox:manage: 200");
	ok(decide(v, p, dir, "alice", "PATCH", "/v1/other", NULL) == 403, "no rule: 403 (deny)");
	ok(decide(v, p, dir, "nobody", "GET", "/healthz", NULL) == 200,
	   "'-' rule: any valid token");

	/* realm isolation: tenant-b's token against agentcube's verifier */
	sleep(6); /* past min_refresh_gap since the first fetch */
	f0 = cubeid_oidc_verifier_fetches(v);
	c = verify(v, dir, "tenant-b-alice", &rc);
	ok(c == NULL && (rc == CUBEID_ERR_JWT_KID || rc == CUBEID_ERR_JWT_ISSUER),
	   "realm tenant-b's token is refused by realm agentcube's verifier: %s",
	   cubeid_strerror(rc));
	ok(decide(v, p, dir, "tenant-b-alice", "GET", "/v1/sandboxes", NULL) == 401,
	   "... and the request gets 401");
	ok(cubeid_oidc_verifier_fetches(v) == f0 + 1,
	   "the unknown kid caused one refresh, then the refresh is rate-limited (%lu -> %lu)", f0,
	   cubeid_oidc_verifier_fetches(v));
	vb = verifier("tenant-b", NULL, NULL);
	c = verify(vb, dir, "tenant-b-alice", &rc);
	ok(rc == 0, "realm tenant-b's own verifier accepts it");
	cubeid_oidc_claims_free(c);
	c = verify(vb, dir, "alice", &rc);
	ok(c == NULL && rc != 0, "and refuses realm agentcube's token: %s", cubeid_strerror(rc));
	cubeid_oidc_verifier_free(vb);

	/* Keycloak unreachable: the keys stay in use for max_stale, then no more. */
	{
		char *url = NULL, *jwks = NULL;

		cubeid_oidc_keycloak_issuer(getenv("KC_URL"), "agentcube", &url);
		/* the real JWKS, installed as if fetched now, and a dead URL for refreshes */
		vdown = verifier("agentcube", NULL, "http://127.0.0.1:9/certs");
		{
			char *cmd = NULL;
			FILE *pf;
			static char body[CUBEID_JWKS_MAX + 1];
			size_t got;

			if (asprintf(&cmd, "curl -sf '%s/protocol/openid-connect/certs'", url) < 0)
				exit(2);
			pf = popen(cmd, "r");
			got = pf ? fread(body, 1, sizeof(body) - 1, pf) : 0;
			if (pf)
				pclose(pf);
			body[got] = '\0';
			jwks = body;
			free(cmd);
		}
		ok(cubeid_oidc_verifier_set_jwks(vdown, jwks, strlen(jwks), 0) == 0,
		   "the realm's JWKS installs into a verifier whose server is down");
		t = slurp(dir, "alice");
		rc = cubeid_oidc_verify(vdown, t, strlen(t), (int64_t)time(NULL) + 60, NULL);
		ok(rc == 0, "60 s later, refresh failing: the cached keys still verify");
		rc = cubeid_oidc_verify(vdown, t, strlen(t), (int64_t)time(NULL) + 200, NULL);
		ok(rc == CUBEID_ERR_UNAVAILABLE,
		   "past max_stale (120 s) with the server down: refused (%s)",
		   cubeid_strerror(rc));
		free(t);
		cubeid_oidc_verifier_free(vdown);
		free(url);
	}

	/* RLAC: sandbox s1 created by alice */
	{
		const char *owner = cubeid_rlac_owner(alice);

		ok(owner != NULL && strcmp(owner, cubeid_oidc_claims_sub(alice)) == 0,
		   "the owner of alice's sandbox is her sub %s", owner ? owner : "(none)");
		ok(cubeid_rlac_owner_hash(owner, hash) == 0 && strlen(hash) == 63,
		   "owner-hash label: %s", hash);
		printf("# owner %s hash %s\n", owner, hash);
		ok(cubeid_rlac_check(bob, owner) == CUBEID_ERR_FORBIDDEN,
		   "bob is denied alice's sandbox (403)");
		ok(cubeid_rlac_check(alice, owner) == CUBEID_OK, "alice reaches her sandbox");
		ok(cubeid_rlac_check(root, owner) == CUBEID_OK, "root (admin) reaches it");
		ok(cubeid_rlac_check(carol, owner) == CUBEID_ERR_FORBIDDEN,
		   "carol (sandbox:manage, not admin) is denied it");
		ok(cubeid_rlac_check(alice, "") == CUBEID_ERR_FORBIDDEN &&
		           cubeid_rlac_check(alice, NULL) == CUBEID_ERR_FORBIDDEN,
		   "a sandbox without an owner: denied (fail closed)");
		ok(cubeid_rlac_check(root, "") == CUBEID_OK, "... except to admin");
	}

	cubeid_oidc_claims_free(alice);
	cubeid_oidc_claims_free(bob);
	cubeid_oidc_claims_free(carol);
	cubeid_oidc_claims_free(root);
	cubeid_oidc_claims_free(nobody);
	cubeid_oidc_claims_free(sa);
	cubeid_oidc_policy_free(p);
	cubeid_oidc_verifier_free(v);
	printf("1..%d\n", n);
	return fails ? 1 : 0;
}

static int
downstream(const char *aud, const char *file)
{
	cubeid_oidc_verifier *v =
	        verifier(getenv("KC_REALM") ? getenv("KC_REALM") : "agentcube", aud, NULL);
	cubeid_oidc_claims *c = NULL;
	char *t = slurp(NULL, file);
	size_t i;
	int rc = cubeid_oidc_verify(v, t, strlen(t), 0, &c);

	if (rc != 0) {
		printf("refused: %s\n", cubeid_strerror(rc));
	} else {
		printf("sub: %s\nazp: %s\nroles:", cubeid_oidc_claims_sub(c),
		       cubeid_oidc_claims_azp(c) ? cubeid_oidc_claims_azp(c) : "");
		for (i = 0; i < cubeid_oidc_claims_role_count(c); i++)
			printf(" %s", cubeid_oidc_claims_role_at(c, i));
		printf("\n");
	}
	cubeid_oidc_claims_free(c);
	cubeid_oidc_verifier_free(v);
	free(t);
	return rc == 0 ? 0 : 1;
}

/* The client_credentials cache against Keycloak: agentcube-sdk with its
 * secret from a file. */
static int
client(const char *secret_file)
{
	struct cubeid_oidc_client_opts o = {0};
	struct cubeid_oidc_token err = {0}, x = {0};
	cubeid_oidc_discovery *d = NULL;
	cubeid_oidc_client *c = NULL;
	char *iss = NULL, *secret = NULL, *t1 = NULL, *t2 = NULL, *t3 = NULL;
	cubeid_jws *j = NULL;
	int64_t now = (int64_t)time(NULL), exp;
	int rc;

	cubeid_oidc_keycloak_issuer(getenv("KC_URL"), "agentcube", &iss);
	ok(cubeid_oidc_discover(iss, &d) == 0, "discovery for %s", iss);
	ok(cubeid_oidc_read_secret_file(secret_file, &secret) == 0, "the secret file reads");
	if (d == NULL || secret == NULL)
		return 1;
	o.token_endpoint = d->token_endpoint;
	o.issuer = iss;
	o.client_id = "agentcube-sdk";
	o.method = CUBEID_OIDC_AUTH_SECRET;
	o.secret = secret;
	o.refresh_ahead = 30;
	ok(cubeid_oidc_client_new(&o, &c) == 0, "a client for agentcube-sdk");
	rc = cubeid_oidc_client_token(c, now, &t1, &err);
	ok(rc == 0 && t1 != NULL, "client_credentials: a token (%s)", cubeid_strerror(rc));
	rc = cubeid_oidc_client_token(c, now + 1, &t2, &err);
	ok(rc == 0 && t2 != NULL && strcmp(t1, t2) == 0 && cubeid_oidc_client_fetches(c) == 1,
	   "the second call is served from the cache (%lu fetch)", cubeid_oidc_client_fetches(c));
	if (t1 == NULL || cubeid_jws_decode(t1, strlen(t1), &j) != 0)
		return 1;
	/* the cache counts from our clock: now + expires_in, and Keycloak's
	 * expires_in is exp - iat */
	exp = now + (int64_t)json_integer_value(json_object_get(cubeid_jws_claims(j), "exp")) -
	      (int64_t)json_integer_value(json_object_get(cubeid_jws_claims(j), "iat"));
	cubeid_jws_free(j);
	rc = cubeid_oidc_client_token(c, exp - 31, &t3, &err);
	ok(rc == 0 && cubeid_oidc_client_fetches(c) == 1,
	   "31 s before expiry: still cached (refresh_ahead 30 s)");
	free(t3);
	t3 = NULL;
	rc = cubeid_oidc_client_token(c, exp - 29, &t3, &err);
	ok(rc == 0 && t3 != NULL && strcmp(t3, t1) != 0 && cubeid_oidc_client_fetches(c) == 2,
	   "29 s before expiry: refreshed ahead of it (a new token, %lu fetches)",
	   cubeid_oidc_client_fetches(c));
	rc = cubeid_oidc_client_exchange(c, t1, "workloadmanager", NULL, 0, &x);
	ok(rc == CUBEID_ERR_OAUTH && x.error != NULL,
	   "agentcube-sdk may not exchange (token exchange is off for it): %s: %s",
	   x.error ? x.error : "?", x.error_description ? x.error_description : "");
	cubeid_oidc_token_clear(&x);
	cubeid_oidc_token_clear(&err);
	free(t1);
	free(t2);
	free(t3);
	free(secret);
	free(iss);
	cubeid_oidc_client_free(c);
	cubeid_oidc_discovery_free(d);
	printf("1..%d\n", n);
	return fails ? 1 : 0;
}

int
main(int argc, char **argv)
{
	if (getenv("KC_URL") == NULL) {
		fprintf(stderr, "kc-check: KC_URL is not set\n");
		return 2;
	}
	if (argc == 3 && strcmp(argv[1], "suite") == 0)
		return suite(argv[2]);
	if (argc == 3 && strcmp(argv[1], "client") == 0)
		return client(argv[2]);
	if (argc == 4 && strcmp(argv[1], "downstream") == 0)
		return downstream(argv[2], argv[3]);
	fprintf(stderr,
	        "usage: kc-check suite DIR | client SECRET-FILE | downstream AUD TOKEN-FILE\n");
	return 2;
}
