/*
 * The TLS loader (include/cubeid/tls.h) with real certificates: a root CA
 * whose key is in a real SoftHSM2 token mints the X.509-SVIDs of
 * AgentCube's Router, WorkloadManager and PicoD, and handshakes run
 * in-process over a BIO pair.
 *   - authorization: Router->WorkloadManager and Router->PicoD, only the
 *     allowed peer connects, the others are refused with
 *     CUBEID_ERR_TLS_PEER_ID; trust-domain and path-prefix entries;
 *   - a wrong ID, an unknown CA (another root, another trust domain), an
 *     expired certificate and a missing client certificate are each refused
 *     with their own code, recorded on the SSL object;
 *   - reload: files swapped AtomicWriter-style (..data symlink); garbage
 *     and a cert that does not match the key are refused and the server
 *     keeps presenting the old certificate; a good pair is picked up by
 *     inotify, by the periodic check alone, and by the event-loop call;
 *   - a PKCS#11 URI key: handshakes signed in the token;
 *   - TLS 1.3 only by default; TLS 1.2 when asked;
 *   - the flags helper and allow-list syntax.
 * The Workload API source runs against the real cubeid-agent --dev in
 * tests/test-tls-agent.c.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <cubeid/ca.h>
#include <cubeid/log.h>
#include <cubeid/tls.h>
#include <cubeid/x509svid.h>

#include "tests/harness.h"
#include "tests/tls-test-util.h"
#include "tests/x509-test-util.h"

#define TD       "cluster.local"
#define ROUTER   "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router"
#define WM       "spiffe://cluster.local/ns/agentcube-system/sa/workloadmanager"
#define PICOD    "spiffe://cluster.local/ns/agentcube-sandbox/sa/picod"
#define STRANGER "spiffe://cluster.local/ns/default/sa/stranger"

static struct th_token th;
static cubeid_token *tok;
static cubeid_ca *root;
static char *dir;

static void
setup(void)
{
	char *rd;

	th_token_setup(&th);
	tok = th_token_open(&th, 0);
	dir = th_mkdtemp("cubeid-tls");
	ck_assert_int_ge(asprintf(&rd, "%s/root", dir), 0);
	ck_assert_int_eq(cubeid_ca_init(tok, rd, TD, NULL, &root), CUBEID_OK);
	free(rd);
}

static void
teardown(void)
{
	cubeid_ca_free(root);
	root = NULL;
	cubeid_token_free(tok);
	tok = NULL;
	th_rmtree(dir);
	free(dir);
	th_token_teardown(&th);
}

static char *
sub(const char *name)
{
	char *p;

	ck_assert_int_ge(asprintf(&p, "%s/%s", dir, name), 0);
	return p;
}

/* A loader over an identity minted by ca into dir/name (plain files). */
static cubeid_tls *
file_loader(cubeid_ca *ca, const char *name, const char *id, const char *const *allow,
            size_t n_allow)
{
	struct cubeid_tls_config cfg = {0};
	char *d = sub(name);
	struct ttu_paths p;
	cubeid_tls *tls = NULL;

	ttu_mint_files(ca, tok, id, d, &p);
	cfg.cert_file = p.cert;
	cfg.key_file = p.key;
	cfg.ca_file = p.ca;
	cfg.allow = allow;
	cfg.n_allow = n_allow;
	cfg.check_interval_ms = -1;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &tls), CUBEID_OK);
	ttu_paths_free(&p);
	free(d);
	return tls;
}

static SSL_CTX *
server_ctx(cubeid_tls *tls)
{
	SSL_CTX *ctx = NULL;

	ck_assert_int_eq(cubeid_tls_server_ctx(tls, &ctx), CUBEID_OK);
	return ctx;
}

static SSL_CTX *
client_ctx(cubeid_tls *tls)
{
	SSL_CTX *ctx = NULL;

	ck_assert_int_eq(cubeid_tls_client_ctx(tls, &ctx), CUBEID_OK);
	return ctx;
}

/* One handshake client -> server; both sides' results. */
static void
expect_ok(SSL_CTX *c, SSL_CTX *s, const char *want_server_sees, const char *want_client_sees)
{
	struct ttu_hs r;

	ttu_handshake(c, s, &r);
	ck_assert_msg(r.connected, "handshake failed: client %d (%s), server %d (%s)", r.client_rc,
	              r.client_why, r.server_rc, r.server_why);
	if (want_server_sees != NULL)
		ck_assert_str_eq(r.server_peer, want_server_sees);
	if (want_client_sees != NULL)
		ck_assert_str_eq(r.client_peer, want_client_sees);
	ck_assert_int_eq(r.version, TLS1_3_VERSION);
}

/* The server refuses the client with code; its reason mentions needle. */
static void
expect_server_refuses(SSL_CTX *c, SSL_CTX *s, int code, const char *needle)
{
	struct ttu_hs r;

	ttu_handshake(c, s, &r);
	ck_assert_msg(!r.connected, "the server accepted a client it should refuse");
	ck_assert_msg(r.server_rc == code, "server: %d (%s), want %d (%s)", r.server_rc,
	              r.server_why, code, cubeid_strerror(code));
	if (needle != NULL)
		ck_assert_msg(strstr(r.server_why, needle) != NULL,
		              "server reason \"%s\" lacks \"%s\"", r.server_why, needle);
	/* and the client learns that it was refused */
	ck_assert_int_ne(r.client_rc, CUBEID_OK);
}

static void
expect_client_refuses(SSL_CTX *c, SSL_CTX *s, int code, const char *needle)
{
	struct ttu_hs r;

	ttu_handshake(c, s, &r);
	ck_assert_msg(!r.connected, "the client accepted a server it should refuse");
	ck_assert_msg(r.client_rc == code, "client: %d (%s), want %d (%s)", r.client_rc,
	              r.client_why, code, cubeid_strerror(code));
	if (needle != NULL)
		ck_assert_msg(strstr(r.client_why, needle) != NULL,
		              "client reason \"%s\" lacks \"%s\"", r.client_why, needle);
	ck_assert_int_ne(r.server_rc, CUBEID_OK);
}

/* ---- authorization ---------------------------------------------------- */

START_TEST(test_router_to_workloadmanager_only_router_connects)
{
	const char *wm_allow[] = {ROUTER}, *router_allow[] = {WM, PICOD}, *any[] = {"spiffe://" TD};
	cubeid_tls *wm = file_loader(root, "wm", WM, wm_allow, 1);
	cubeid_tls *router = file_loader(root, "router", ROUTER, router_allow, 2);
	cubeid_tls *picod = file_loader(root, "picod", PICOD, any, 1);
	cubeid_tls *stranger = file_loader(root, "stranger", STRANGER, any, 1);
	SSL_CTX *wm_s = server_ctx(wm), *router_c = client_ctx(router);
	SSL_CTX *picod_c = client_ctx(picod), *stranger_c = client_ctx(stranger);

	expect_ok(router_c, wm_s, ROUTER, WM);
	expect_server_refuses(picod_c, wm_s, CUBEID_ERR_TLS_PEER_ID,
	                      PICOD " is not on the allow-list");
	expect_server_refuses(stranger_c, wm_s, CUBEID_ERR_TLS_PEER_ID, STRANGER);
	/* and the router, after all that, still connects */
	expect_ok(router_c, wm_s, ROUTER, WM);

	SSL_CTX_free(wm_s);
	SSL_CTX_free(router_c);
	SSL_CTX_free(picod_c);
	SSL_CTX_free(stranger_c);
	cubeid_tls_free(wm);
	cubeid_tls_free(router);
	cubeid_tls_free(picod);
	cubeid_tls_free(stranger);
}
END_TEST

START_TEST(test_router_to_picod_only_router_connects)
{
	const char *picod_allow[] = {ROUTER}, *router_allow[] = {PICOD}, *any[] = {"spiffe://" TD};
	const char *router_wm_only[] = {WM};
	cubeid_tls *picod = file_loader(root, "picod", PICOD, picod_allow, 1);
	cubeid_tls *router = file_loader(root, "router", ROUTER, router_allow, 1);
	cubeid_tls *router2 = file_loader(root, "router2", ROUTER, router_wm_only, 1);
	cubeid_tls *wm = file_loader(root, "wm", WM, any, 1);
	SSL_CTX *picod_s = server_ctx(picod), *router_c = client_ctx(router);
	SSL_CTX *wm_c = client_ctx(wm), *router2_c = client_ctx(router2);

	expect_ok(router_c, picod_s, ROUTER, PICOD);
	expect_server_refuses(wm_c, picod_s, CUBEID_ERR_TLS_PEER_ID, WM);
	/* the client side checks the server too: a router that expects the
	 * WorkloadManager refuses to talk to PicoD */
	expect_client_refuses(router2_c, picod_s, CUBEID_ERR_TLS_PEER_ID, PICOD);

	SSL_CTX_free(picod_s);
	SSL_CTX_free(router_c);
	SSL_CTX_free(wm_c);
	SSL_CTX_free(router2_c);
	cubeid_tls_free(picod);
	cubeid_tls_free(router);
	cubeid_tls_free(router2);
	cubeid_tls_free(wm);
}
END_TEST

START_TEST(test_allow_list_prefix_and_trust_domain)
{
	const char *prefix[] = {"spiffe://" TD "/ns/agentcube-system/*"};
	const char *td[] = {"spiffe://" TD}, *other_td[] = {"spiffe://example.org"};
	const char *any[] = {"spiffe://" TD};
	cubeid_tls *sp = file_loader(root, "s-prefix", WM, prefix, 1);
	cubeid_tls *st = file_loader(root, "s-td", WM, td, 1);
	cubeid_tls *so = file_loader(root, "s-other", WM, other_td, 1);
	cubeid_tls *router = file_loader(root, "router", ROUTER, any, 1);
	cubeid_tls *stranger = file_loader(root, "stranger", STRANGER, any, 1);
	SSL_CTX *sp_s = server_ctx(sp), *st_s = server_ctx(st), *so_s = server_ctx(so);
	SSL_CTX *router_c = client_ctx(router), *stranger_c = client_ctx(stranger);

	expect_ok(router_c, sp_s, ROUTER, WM);
	expect_server_refuses(stranger_c, sp_s, CUBEID_ERR_TLS_PEER_ID, STRANGER);
	expect_ok(router_c, st_s, ROUTER, WM);
	expect_ok(stranger_c, st_s, STRANGER, WM);
	expect_server_refuses(router_c, so_s, CUBEID_ERR_TLS_PEER_ID, ROUTER);

	SSL_CTX_free(sp_s);
	SSL_CTX_free(st_s);
	SSL_CTX_free(so_s);
	SSL_CTX_free(router_c);
	SSL_CTX_free(stranger_c);
	cubeid_tls_free(sp);
	cubeid_tls_free(st);
	cubeid_tls_free(so);
	cubeid_tls_free(router);
	cubeid_tls_free(stranger);
}
END_TEST

START_TEST(test_allow_list_syntax)
{
	cubeid_spiffe_id *id = NULL;
	const char *why = NULL;

	ck_assert_int_eq(cubeid_spiffe_id_parse(ROUTER, strlen(ROUTER), &id, NULL), CUBEID_OK);
	ck_assert(cubeid_tls_allow_match(ROUTER, id));
	ck_assert(cubeid_tls_allow_match("spiffe://cluster.local", id));
	ck_assert(cubeid_tls_allow_match("spiffe://cluster.local/*", id));
	ck_assert(cubeid_tls_allow_match("spiffe://cluster.local/ns/agentcube-system/*", id));
	ck_assert(cubeid_tls_allow_match("spiffe://cluster.local/ns/agentcube-system/sa/*", id));
	/* whole segments only */
	ck_assert(!cubeid_tls_allow_match("spiffe://cluster.local/ns/agentcube/*", id));
	ck_assert(!cubeid_tls_allow_match(
	        "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-*", id));
	ck_assert(!cubeid_tls_allow_match(
	        "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-router/*", id));
	ck_assert(!cubeid_tls_allow_match("spiffe://cluster.loc", id));
	ck_assert(!cubeid_tls_allow_match(
	        "spiffe://cluster.local/ns/agentcube-system/sa/agentcube-route", id));
	ck_assert(!cubeid_tls_allow_match("spiffe://example.org", id));
	ck_assert(!cubeid_tls_allow_match(NULL, id));
	cubeid_spiffe_id_free(id);

	ck_assert_int_eq(cubeid_tls_allow_validate("spiffe://td/a/*", &why), CUBEID_OK);
	ck_assert_int_eq(cubeid_tls_allow_validate("spiffe://td/a*", &why), CUBEID_ERR_CONFIG);
	ck_assert_int_eq(cubeid_tls_allow_validate("spiffe://td/a/", &why), CUBEID_ERR_CONFIG);
	ck_assert_int_eq(cubeid_tls_allow_validate("spiffe://TD/a", &why), CUBEID_ERR_CONFIG);
	ck_assert_int_eq(cubeid_tls_allow_validate("https://td/a", &why), CUBEID_ERR_CONFIG);
	ck_assert_int_eq(cubeid_tls_allow_validate("*", &why), CUBEID_ERR_CONFIG);
	ck_assert_int_eq(cubeid_tls_allow_validate("", &why), CUBEID_ERR_CONFIG);
	ck_assert_int_eq(cubeid_tls_allow_validate(NULL, &why), CUBEID_ERR_CONFIG);
}
END_TEST

/* ---- each refusal with its own reason ---------------------------------- */

/* A plain OpenSSL client over the files file_loader() wrote to dir/name. */
static void
plain_files(const char *name, SSL_CTX **out)
{
	char *c, *k, *a;

	ck_assert_int_ge(asprintf(&c, "%s/%s/svid.pem", dir, name), 0);
	ck_assert_int_ge(asprintf(&k, "%s/%s/svid_key.pem", dir, name), 0);
	ck_assert_int_ge(asprintf(&a, "%s/%s/svid_bundle.pem", dir, name), 0);
	*out = ttu_plain_client_ctx(c, k, a);
	free(c);
	free(k);
	free(a);
}

START_TEST(test_unknown_ca_is_refused)
{
	const char *allow[] = {ROUTER}, *any[] = {"spiffe://" TD, "spiffe://example.org"};
	char *rd2 = sub("root2"), *rd3 = sub("root3");
	cubeid_ca *root2 = NULL, *root3 = NULL;
	cubeid_tls *wm, *rogue, *foreign;
	SSL_CTX *wm_s, *rogue_c, *foreign_c;

	/* another root of the same trust domain, and a root of another one */
	ck_assert_int_eq(cubeid_ca_init(tok, rd2, TD, NULL, &root2), CUBEID_OK);
	ck_assert_int_eq(cubeid_ca_init(tok, rd3, "example.org", NULL, &root3), CUBEID_OK);
	wm = file_loader(root, "wm", WM, allow, 1);
	rogue = file_loader(root2, "rogue", ROUTER, any, 1);
	foreign =
	        file_loader(root3, "foreign",
	                    "spiffe://example.org/ns/agentcube-system/sa/agentcube-router", any, 1);
	wm_s = server_ctx(wm);
	/* plain OpenSSL clients with the rogue identities, which do not
	 * check the server (ours would refuse it first, see below) */
	plain_files("rogue", &rogue_c);
	plain_files("foreign", &foreign_c);

	/* a router ID, but not from our CA */
	expect_server_refuses(rogue_c, wm_s, CUBEID_ERR_TLS_UNKNOWN_CA, "does not lead to a CA");
	expect_server_refuses(foreign_c, wm_s, CUBEID_ERR_TLS_UNKNOWN_CA,
	                      "trust domain example.org");
	/* the client side: our loader with the rogue identity refuses our
	 * server the same way */
	SSL_CTX_free(rogue_c);
	rogue_c = client_ctx(rogue);
	expect_client_refuses(rogue_c, wm_s, CUBEID_ERR_TLS_UNKNOWN_CA, "does not lead to a CA");

	SSL_CTX_free(wm_s);
	SSL_CTX_free(rogue_c);
	SSL_CTX_free(foreign_c);
	cubeid_tls_free(wm);
	cubeid_tls_free(rogue);
	cubeid_tls_free(foreign);
	cubeid_ca_free(root2);
	cubeid_ca_free(root3);
	free(rd2);
	free(rd3);
}
END_TEST

START_TEST(test_expired_cert_is_refused)
{
	const char *allow[] = {ROUTER};
	char *d = sub("expired"), *cert, *key, *ca;
	cubeid_tls *wm = file_loader(root, "wm", WM, allow, 1);
	SSL_CTX *wm_s = server_ctx(wm), *c;
	EVP_PKEY *k = tu_ec_key();
	X509 *rc = cubeid_ca_cert(root), *leaf;
	struct tu_spec spec = {0};

	/* a router certificate from our CA that expired an hour ago */
	spec.key = k;
	spec.signer = cubeid_ca_evp(root);
	spec.issuer = rc;
	spec.bc = "critical,CA:FALSE";
	spec.ku = "critical,digitalSignature";
	spec.eku = "serverAuth,clientAuth";
	spec.san = "URI:" ROUTER;
	spec.nb = -7200;
	spec.na = -3600;
	leaf = tu_cert(&spec);
	ck_assert_int_eq(mkdir(d, 0700), 0);
	ttu_write_cert_key(d, leaf, k, &cert, &key);
	ca = sub("expired/ca.pem");
	tu_write_pem(ca, &rc, 1);
	/* plain OpenSSL as the client: our loader would refuse to load it */
	c = ttu_plain_client_ctx(cert, key, ca);
	expect_server_refuses(c, wm_s, CUBEID_ERR_TLS_PEER_EXPIRED, "expired");

	SSL_CTX_free(c);
	SSL_CTX_free(wm_s);
	cubeid_tls_free(wm);
	X509_free(leaf);
	EVP_PKEY_free(k);
	free(d);
	free(cert);
	free(key);
	free(ca);
}
END_TEST

START_TEST(test_missing_client_cert_is_refused)
{
	const char *allow[] = {ROUTER};
	cubeid_tls *wm = file_loader(root, "wm", WM, allow, 1);
	SSL_CTX *wm_s = server_ctx(wm), *c = ttu_plain_client_ctx(NULL, NULL, NULL);

	expect_server_refuses(c, wm_s, CUBEID_ERR_TLS_NO_PEER_CERT, "presented no certificate");

	SSL_CTX_free(c);
	SSL_CTX_free(wm_s);
	cubeid_tls_free(wm);
}
END_TEST

START_TEST(test_not_an_svid_is_refused)
{
	const char *allow[] = {ROUTER};
	char *d = sub("nosan"), *cert, *key, *ca;
	cubeid_tls *wm = file_loader(root, "wm", WM, allow, 1);
	SSL_CTX *wm_s = server_ctx(wm), *c;
	EVP_PKEY *k = tu_ec_key();
	X509 *rc = cubeid_ca_cert(root), *leaf;
	struct tu_spec spec = {0};

	/* signed by our CA but with a DNS name instead of a SPIFFE ID */
	spec.key = k;
	spec.signer = cubeid_ca_evp(root);
	spec.issuer = rc;
	spec.bc = "critical,CA:FALSE";
	spec.ku = "critical,digitalSignature";
	spec.san = "DNS:router.example";
	spec.nb = -60;
	spec.na = 3600;
	leaf = tu_cert(&spec);
	ck_assert_int_eq(mkdir(d, 0700), 0);
	ttu_write_cert_key(d, leaf, k, &cert, &key);
	ca = sub("nosan/ca.pem");
	tu_write_pem(ca, &rc, 1);
	c = ttu_plain_client_ctx(cert, key, ca);
	expect_server_refuses(c, wm_s, CUBEID_ERR_X509_SVID, "no URI SAN");

	SSL_CTX_free(c);
	SSL_CTX_free(wm_s);
	cubeid_tls_free(wm);
	X509_free(leaf);
	EVP_PKEY_free(k);
	free(d);
	free(cert);
	free(key);
	free(ca);
}
END_TEST

START_TEST(test_tls13_default_tls12_optional)
{
	const char *allow[] = {ROUTER}, *any[] = {"spiffe://" TD};
	struct cubeid_tls_config cfg = {0};
	char *d = sub("wm12");
	struct ttu_paths p;
	cubeid_tls *wm = file_loader(root, "wm", WM, allow, 1), *wm12 = NULL;
	cubeid_tls *router = file_loader(root, "router", ROUTER, any, 1);
	SSL_CTX *wm_s = server_ctx(wm), *wm12_s, *c12 = client_ctx(router);
	struct ttu_hs r;

	ttu_mint_files(root, tok, WM, d, &p);
	cfg.cert_file = p.cert;
	cfg.key_file = p.key;
	cfg.ca_file = p.ca;
	cfg.allow = allow;
	cfg.n_allow = 1;
	cfg.tls12 = true;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &wm12), CUBEID_OK);
	wm12_s = server_ctx(wm12);
	/* a client limited to TLS 1.2 */
	ck_assert_int_eq(SSL_CTX_set_min_proto_version(c12, TLS1_2_VERSION), 1);
	ck_assert_int_eq(SSL_CTX_set_max_proto_version(c12, TLS1_2_VERSION), 1);
	ttu_handshake(c12, wm_s, &r);
	ck_assert_msg(!r.connected, "a TLS 1.2 client got through a TLS 1.3-only server");
	ck_assert_int_eq(r.server_rc, CUBEID_ERR_TLS);
	ttu_handshake(c12, wm12_s, &r);
	ck_assert_msg(r.connected, "TLS 1.2 with tls12 set: %s / %s", r.client_why, r.server_why);
	ck_assert_int_eq(r.version, TLS1_2_VERSION);
	ck_assert_str_eq(r.server_peer, ROUTER);

	SSL_CTX_free(wm_s);
	SSL_CTX_free(wm12_s);
	SSL_CTX_free(c12);
	cubeid_tls_free(wm);
	cubeid_tls_free(wm12);
	cubeid_tls_free(router);
	ttu_paths_free(&p);
	free(d);
}
END_TEST

/* ---- reload ----------------------------------------------------------- */

/* Wait (generously) until the loader's generation passes gen or its last
 * error becomes err (when err != 0). */
static void
wait_for(cubeid_tls *tls, unsigned long gen, int err)
{
	int i;

	for (i = 0; i < 600; i++) {
		if (err == 0 && cubeid_tls_generation(tls) > gen)
			return;
		if (err != 0 && cubeid_tls_last_error(tls, NULL) == err)
			return;
		poll(NULL, 0, 100);
	}
	ck_abort_msg("the loader did not %s within 60 s", err == 0 ? "reload" : "report the error");
}

/* Serial of the certificate the server presents now. */
static char *
presented_serial(SSL_CTX *c, SSL_CTX *s)
{
	struct ttu_hs r;

	ttu_handshake(c, s, &r);
	ck_assert_msg(r.connected, "handshake failed: %s / %s", r.client_why, r.server_why);
	return strdup(r.server_serial);
}

static char *
serial_of(X509 *x)
{
	return ttu_serial_hex(x);
}

/* A server over an AtomicWriter directory; reloads by inotify (no periodic
 * check), or by the periodic check alone (no inotify). */
static void
reload_case(bool use_inotify)
{
	const char *allow[] = {ROUTER}, *any[] = {"spiffe://" TD};
	struct cubeid_tls_config cfg = {0};
	char *aw = sub("aw"), *s0, *s1, *s2, *bundle = NULL, *key_a = NULL, *garbage;
	cubeid_x509_svid *a, *b, *c;
	cubeid_tls *wm = NULL, *router = file_loader(root, "router", ROUTER, any, 1);
	SSL_CTX *wm_s, *router_c = client_ctx(router);
	unsigned long gen;
	const char *why;
	char *pa, *pb, *pc;

	ck_assert_int_eq(cubeid_x509_bundle_to_pem(cubeid_ca_bundle(root), &bundle, NULL),
	                 CUBEID_OK);
	a = ttu_mint(root, tok, WM);
	b = ttu_mint(root, tok, WM);
	c = ttu_mint(root, tok, WM);
	ttu_atomic_write(aw, a, bundle, NULL, NULL);
	cfg.cert_file = s0 = sub("aw/svid.pem");
	cfg.key_file = s1 = sub("aw/svid_key.pem");
	cfg.ca_file = s2 = sub("aw/svid_bundle.pem");
	cfg.allow = allow;
	cfg.n_allow = 1;
	cfg.check_interval_ms = use_inotify ? -1 : 200;
	cfg.no_inotify = !use_inotify;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &wm), CUBEID_OK);
	ck_assert_int_eq(cubeid_tls_generation(wm), 1);
	wm_s = server_ctx(wm);
	pa = serial_of(cubeid_x509_svid_leaf(a));
	pb = serial_of(cubeid_x509_svid_leaf(b));
	pc = serial_of(cubeid_x509_svid_leaf(c));
	s0 = presented_serial(router_c, wm_s);
	ck_assert_str_eq(s0, pa);
	free(s0);

	/* garbage in the certificate file: refused, the old one still served */
	gen = cubeid_tls_generation(wm);
	garbage = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
	ttu_atomic_write(aw, a, bundle, garbage, NULL);
	wait_for(wm, gen, CUBEID_ERR_X509);
	ck_assert_int_eq(cubeid_tls_last_error(wm, &why), CUBEID_ERR_X509);
	ck_assert_msg(strstr(why, "certificate file") != NULL, "why: %s", why);
	ck_assert_int_eq(cubeid_tls_generation(wm), gen);
	s0 = presented_serial(router_c, wm_s);
	ck_assert_str_eq(s0, pa);
	free(s0);

	/* b's certificate with a's key: refused as a mismatch */
	ck_assert_int_eq(cubeid_x509_svid_key_pkcs8_pem(a, &key_a, NULL), CUBEID_OK);
	ttu_atomic_write(aw, b, bundle, NULL, key_a);
	wait_for(wm, gen, CUBEID_ERR_KEY_MISMATCH);
	ck_assert_int_eq(cubeid_tls_generation(wm), gen);
	s0 = presented_serial(router_c, wm_s);
	ck_assert_str_eq(s0, pa);
	free(s0);

	/* a good new pair: picked up, and presented by the next handshake */
	ttu_atomic_write(aw, c, bundle, NULL, NULL);
	wait_for(wm, gen, 0);
	ck_assert_int_eq(cubeid_tls_last_error(wm, NULL), CUBEID_OK);
	s0 = presented_serial(router_c, wm_s);
	ck_assert_str_eq(s0, pc);
	ck_assert_str_ne(s0, pb);
	free(s0);

	SSL_CTX_free(wm_s);
	SSL_CTX_free(router_c);
	cubeid_tls_free(wm);
	cubeid_tls_free(router);
	cubeid_x509_svid_free(a);
	cubeid_x509_svid_free(b);
	cubeid_x509_svid_free(c);
	OPENSSL_cleanse(key_a, strlen(key_a));
	free(key_a);
	free(bundle);
	free(pa);
	free(pb);
	free(pc);
	free(aw);
	free((char *)cfg.cert_file);
	free((char *)cfg.key_file);
	free((char *)cfg.ca_file);
}

START_TEST(test_reload_by_inotify_keeps_old_on_broken_files)
{
	reload_case(true);
}
END_TEST

START_TEST(test_reload_by_periodic_check_alone)
{
	reload_case(false);
}
END_TEST

/* Files rewritten in place, certificate first and the key a moment later,
 * as spiffe-helper writes them: the loader may read a torn or mismatched
 * pair, refuses it, keeps serving the old one, and loads the new pair once
 * the key is written too. */
START_TEST(test_reload_in_place_writes_never_serve_a_torn_pair)
{
	const char *allow[] = {ROUTER}, *any[] = {"spiffe://" TD};
	struct cubeid_tls_config cfg = {0};
	char *d = sub("inplace"), *bundle = NULL, *chain = NULL, *key = NULL, *pa, *pb, *s0;
	cubeid_x509_svid *a = ttu_mint(root, tok, WM), *b = ttu_mint(root, tok, WM);
	cubeid_tls *wm = NULL, *router = file_loader(root, "router", ROUTER, any, 1);
	SSL_CTX *wm_s, *router_c = client_ctx(router);
	unsigned long gen;
	int i;

	ck_assert_int_eq(cubeid_x509_bundle_to_pem(cubeid_ca_bundle(root), &bundle, NULL),
	                 CUBEID_OK);
	ck_assert_int_eq(cubeid_x509_svid_write_files(a, cubeid_ca_bundle(root), d), CUBEID_OK);
	cfg.cert_file = sub("inplace/svid.pem");
	cfg.key_file = sub("inplace/svid_key.pem");
	cfg.ca_file = sub("inplace/svid_bundle.pem");
	cfg.allow = allow;
	cfg.n_allow = 1;
	cfg.check_interval_ms = -1;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &wm), CUBEID_OK);
	wm_s = server_ctx(wm);
	pa = serial_of(cubeid_x509_svid_leaf(a));
	pb = serial_of(cubeid_x509_svid_leaf(b));
	gen = cubeid_tls_generation(wm);

	ck_assert_int_eq(cubeid_x509_svid_chain_pem(b, &chain, NULL), CUBEID_OK);
	ck_assert_int_eq(cubeid_x509_svid_key_pkcs8_pem(b, &key, NULL), CUBEID_OK);
	tu_write_str(cfg.cert_file, chain); /* truncate, then write: not atomic */
	for (i = 0; i < 5; i++) {
		poll(NULL, 0, 100);
		s0 = presented_serial(router_c, wm_s); /* asserts the handshake works */
		ck_assert_str_eq(s0, pa);
		free(s0);
	}
	ck_assert_int_eq(cubeid_tls_generation(wm), gen);
	tu_write_str(cfg.key_file, key);
	wait_for(wm, gen, 0);
	s0 = presented_serial(router_c, wm_s);
	ck_assert_str_eq(s0, pb);
	free(s0);

	SSL_CTX_free(wm_s);
	SSL_CTX_free(router_c);
	cubeid_tls_free(wm);
	cubeid_tls_free(router);
	cubeid_x509_svid_free(a);
	cubeid_x509_svid_free(b);
	OPENSSL_cleanse(key, strlen(key));
	free(key);
	free(chain);
	free(bundle);
	free(pa);
	free(pb);
	free(d);
	free((char *)cfg.cert_file);
	free((char *)cfg.key_file);
	free((char *)cfg.ca_file);
}
END_TEST

START_TEST(test_reload_event_loop_mode)
{
	const char *allow[] = {ROUTER};
	struct cubeid_tls_config cfg = {0};
	char *aw = sub("aw"), *bundle = NULL;
	cubeid_x509_svid *a = ttu_mint(root, tok, WM), *b = ttu_mint(root, tok, WM);
	cubeid_tls *wm = NULL;
	struct pollfd pfd;
	X509 *cur = NULL;
	int fd, n;

	ck_assert_int_eq(cubeid_x509_bundle_to_pem(cubeid_ca_bundle(root), &bundle, NULL),
	                 CUBEID_OK);
	ttu_atomic_write(aw, a, bundle, NULL, NULL);
	cfg.cert_file = sub("aw/svid.pem");
	cfg.key_file = sub("aw/svid_key.pem");
	cfg.ca_file = sub("aw/svid_bundle.pem");
	cfg.allow = allow;
	cfg.n_allow = 1;
	cfg.no_thread = true;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &wm), CUBEID_OK);
	fd = cubeid_tls_fd(wm);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(cubeid_tls_reload_check(wm), 0); /* nothing changed */
	ttu_atomic_write(aw, b, bundle, NULL, NULL);
	pfd.fd = fd;
	pfd.events = POLLIN;
	n = poll(&pfd, 1, 60000);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(cubeid_tls_reload_check(wm), 1);
	ck_assert_int_eq(cubeid_tls_own_cert(wm, &cur), CUBEID_OK);
	ck_assert_int_eq(X509_cmp(cur, cubeid_x509_svid_leaf(b)), 0);
	ck_assert_int_eq(cubeid_tls_reload_check(wm), 0);
	/* a forced reload of the same files swaps in an equal state */
	ck_assert_int_eq(cubeid_tls_reload(wm), 1);
	ck_assert_int_eq(cubeid_tls_generation(wm), 3);

	X509_free(cur);
	cubeid_tls_free(wm);
	cubeid_x509_svid_free(a);
	cubeid_x509_svid_free(b);
	free(bundle);
	free(aw);
	free((char *)cfg.cert_file);
	free((char *)cfg.key_file);
	free((char *)cfg.ca_file);
}
END_TEST

START_TEST(test_bad_first_load_fails)
{
	const char *allow[] = {ROUTER}, *bad_allow[] = {"spiffe://x/a/"};
	struct cubeid_tls_config cfg = {0};
	char *d = sub("wm"), *e = sub("other");
	struct ttu_paths p, q;
	cubeid_tls *tls = NULL;

	ttu_mint_files(root, tok, WM, d, &p);
	ttu_mint_files(root, tok, ROUTER, e, &q);
	cfg.cert_file = p.cert;
	cfg.key_file = q.key; /* another identity's key */
	cfg.ca_file = p.ca;
	cfg.allow = allow;
	cfg.n_allow = 1;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &tls), CUBEID_ERR_KEY_MISMATCH);
	ck_assert_ptr_null(tls);
	cfg.key_file = p.key;
	cfg.allow = bad_allow;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &tls), CUBEID_ERR_CONFIG);
	cfg.allow = allow;
	cfg.n_allow = 0;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &tls), CUBEID_ERR_CONFIG);
	cfg.n_allow = 1;
	cfg.ca_file = "/nonexistent/ca.pem";
	ck_assert_int_eq(cubeid_tls_new(&cfg, &tls), CUBEID_ERR_NOT_FOUND);
	cfg.ca_file = p.ca;
	cfg.trust_domain = "example.org"; /* the bundle of the wrong trust domain */
	ck_assert_int_eq(cubeid_tls_new(&cfg, &tls), CUBEID_ERR_X509_SVID);
	cfg.trust_domain = NULL;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &tls), CUBEID_OK);
	cubeid_tls_free(tls);
	ttu_paths_free(&p);
	ttu_paths_free(&q);
	free(d);
	free(e);
}
END_TEST

/* ---- the PKCS#11 key source ------------------------------------------- */

START_TEST(test_pkcs11_key_signs_in_the_token)
{
	const char *allow[] = {ROUTER}, *any[] = {"spiffe://" TD};
	struct cubeid_tls_config cfg = {0};
	struct cubeid_svid_req req = {0};
	cubeid_spiffe_id *id = NULL;
	cubeid_x509_svid *svid = NULL;
	char *d = sub("p11"), *uri = NULL, *pem = NULL, *bundle = NULL, *cert, *ca;
	cubeid_tls *wm = NULL, *router = file_loader(root, "router", ROUTER, any, 1);
	SSL_CTX *wm_s, *wm_c, *router_c = client_ctx(router), *router_s = server_ctx(router);
	int i;

	if (th_is_tpm(&th))
		th_skip("tpm2-pkcs11 rejects session-object keys");
	ck_assert_int_eq(cubeid_spiffe_id_parse(WM, strlen(WM), &id, NULL), CUBEID_OK);
	req.id = id;
	req.policy = CUBEID_SVID_KEY_RESIDENT;
	req.persistent = true; /* the loader opens the token itself */
	ck_assert_int_eq(cubeid_x509_svid_mint(root, &req, &svid), CUBEID_OK);
	ck_assert(!cubeid_key_is_exportable(cubeid_x509_svid_key(svid)));
	ck_assert_int_eq(cubeid_x509_svid_key_uri(svid, &uri), CUBEID_OK);
	ck_assert_int_eq(cubeid_x509_svid_chain_pem(svid, &pem, NULL), CUBEID_OK);
	ck_assert_int_eq(cubeid_x509_bundle_to_pem(cubeid_ca_bundle(root), &bundle, NULL),
	                 CUBEID_OK);
	ck_assert_int_eq(mkdir(d, 0700), 0);
	cert = sub("p11/svid.pem");
	ca = sub("p11/svid_bundle.pem");
	tu_write_str(cert, pem);
	tu_write_str(ca, bundle);

	cfg.cert_file = cert;
	cfg.key_file = uri;
	cfg.ca_file = ca;
	cfg.pin_file = th.pin_file;
	cfg.module_path = th.module;
	cfg.allow = allow;
	cfg.n_allow = 1;
	ck_assert_int_eq(cubeid_tls_new(&cfg, &wm), CUBEID_OK);
	wm_s = server_ctx(wm);
	wm_c = client_ctx(wm);
	/* as a server and as a client, several times */
	for (i = 0; i < 3; i++) {
		expect_ok(router_c, wm_s, ROUTER, WM);
		expect_ok(wm_c, router_s, WM, ROUTER);
	}

	SSL_CTX_free(wm_s);
	SSL_CTX_free(wm_c);
	SSL_CTX_free(router_c);
	SSL_CTX_free(router_s);
	cubeid_tls_free(wm);
	cubeid_tls_free(router);
	cubeid_key_delete(cubeid_x509_svid_key(svid));
	cubeid_x509_svid_free(svid);
	cubeid_spiffe_id_free(id);
	free(uri);
	free(pem);
	free(bundle);
	free(cert);
	free(ca);
	free(d);
}
END_TEST

/* ---- flags ------------------------------------------------------------ */

START_TEST(test_flags_parse)
{
	char *argv[] = {"prog",
	                "--port",
	                "8080",
	                "--enable-mtls",
	                "--mtls-cert-file",
	                "/c.pem",
	                "--mtls-key-file=/k.pem",
	                "--mtls-ca-file",
	                "/ca.pem",
	                "--mtls-allow-id",
	                ROUTER,
	                "--mtls-allow-id=spiffe://cluster.local/ns/x/*",
	                "-v",
	                "--",
	                "--mtls-tls12",
	                NULL};
	int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1;
	struct cubeid_tls_flags f;
	struct cubeid_tls_config cfg;
	cubeid_tls *tls = NULL;

	cubeid_tls_flags_init(&f);
	ck_assert_int_eq(cubeid_tls_flags_parse(&f, &argc, argv), CUBEID_OK);
	ck_assert_int_eq(argc, 6);
	ck_assert_str_eq(argv[1], "--port");
	ck_assert_str_eq(argv[2], "8080");
	ck_assert_str_eq(argv[3], "-v");
	ck_assert_str_eq(argv[4], "--");
	ck_assert_str_eq(argv[5], "--mtls-tls12"); /* after "--": not ours */
	ck_assert_ptr_null(argv[6]);
	ck_assert(f.enable);
	ck_assert(!f.tls12);
	ck_assert_str_eq(f.cert_file, "/c.pem");
	ck_assert_str_eq(f.key_file, "/k.pem");
	ck_assert_str_eq(f.ca_file, "/ca.pem");
	ck_assert_int_eq(f.n_allow, 2);
	ck_assert_str_eq(f.allow[1], "spiffe://cluster.local/ns/x/*");
	ck_assert_int_eq(cubeid_tls_flags_config(&f, &cfg), CUBEID_OK);
	ck_assert_str_eq(cfg.cert_file, "/c.pem");
	ck_assert_int_eq(cfg.n_allow, 2);

	/* nothing given: mTLS off, no loader */
	cubeid_tls_flags_init(&f);
	ck_assert_int_eq(cubeid_tls_new_from_flags(&f, &tls), CUBEID_OK);
	ck_assert_ptr_null(tls);
	/* --mtls-* without --enable-mtls */
	f.cert_file = "/c.pem";
	ck_assert_int_eq(cubeid_tls_flags_config(&f, &cfg), CUBEID_ERR_CONFIG);
	/* --enable-mtls without an allow-list */
	f.enable = true;
	f.key_file = "/k";
	f.ca_file = "/ca";
	ck_assert_int_eq(cubeid_tls_flags_config(&f, &cfg), CUBEID_ERR_CONFIG);
	/* without the key file */
	f.allow[f.n_allow++] = ROUTER;
	f.key_file = NULL;
	ck_assert_int_eq(cubeid_tls_flags_config(&f, &cfg), CUBEID_ERR_CONFIG);
	/* files and a socket */
	f.key_file = "/k";
	f.socket = "/run/x.sock";
	ck_assert_int_eq(cubeid_tls_flags_config(&f, &cfg), CUBEID_ERR_CONFIG);
	/* a socket alone is enough */
	f.cert_file = f.key_file = f.ca_file = NULL;
	ck_assert_int_eq(cubeid_tls_flags_config(&f, &cfg), CUBEID_OK);
	ck_assert_str_eq(cfg.socket, "/run/x.sock");
}
END_TEST

START_TEST(test_flags_parse_errors)
{
	struct cubeid_tls_flags f;
	char *a1[] = {"p", "--mtls-cert-file", NULL};
	char *a2[] = {"p", "--mtls-cert-file=a", "--mtls-cert-file=b", NULL};
	char *a3[] = {"p", "--enable-mtls=yes", NULL};
	char *a4[] = {"p", "--mtls-check-interval", "10x", NULL};
	char *a5[] = {"p", "--mtls-cert-file=", NULL};
	char *a6[] = {"p", "--enable-mtlsx", NULL};
	int n;

	cubeid_tls_flags_init(&f);
	n = 2;
	ck_assert_int_eq(cubeid_tls_flags_parse(&f, &n, a1), CUBEID_ERR_CONFIG);
	cubeid_tls_flags_init(&f);
	n = 3;
	ck_assert_int_eq(cubeid_tls_flags_parse(&f, &n, a2), CUBEID_ERR_CONFIG);
	cubeid_tls_flags_init(&f);
	n = 2;
	ck_assert_int_eq(cubeid_tls_flags_parse(&f, &n, a3), CUBEID_ERR_CONFIG);
	cubeid_tls_flags_init(&f);
	n = 3;
	ck_assert_int_eq(cubeid_tls_flags_parse(&f, &n, a4), CUBEID_ERR_CONFIG);
	cubeid_tls_flags_init(&f);
	n = 2;
	ck_assert_int_eq(cubeid_tls_flags_parse(&f, &n, a5), CUBEID_ERR_CONFIG);
	/* a longer flag that merely starts like ours is left alone */
	cubeid_tls_flags_init(&f);
	n = 2;
	ck_assert_int_eq(cubeid_tls_flags_parse(&f, &n, a6), CUBEID_OK);
	ck_assert_int_eq(n, 2);
	ck_assert(!f.enable);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_router_to_workloadmanager_only_router_connects);
	tcase_add_test(tc, test_router_to_picod_only_router_connects);
	tcase_add_test(tc, test_allow_list_prefix_and_trust_domain);
	tcase_add_test(tc, test_allow_list_syntax);
	tcase_add_test(tc, test_unknown_ca_is_refused);
	tcase_add_test(tc, test_expired_cert_is_refused);
	tcase_add_test(tc, test_missing_client_cert_is_refused);
	tcase_add_test(tc, test_not_an_svid_is_refused);
	tcase_add_test(tc, test_tls13_default_tls12_optional);
	tcase_add_test(tc, test_reload_by_inotify_keeps_old_on_broken_files);
	tcase_add_test(tc, test_reload_by_periodic_check_alone);
	tcase_add_test(tc, test_reload_in_place_writes_never_serve_a_torn_pair);
	tcase_add_test(tc, test_reload_event_loop_mode);
	tcase_add_test(tc, test_bad_first_load_fails);
	tcase_add_test(tc, test_pkcs11_key_signs_in_the_token);
	tcase_add_test(tc, test_flags_parse);
	tcase_add_test(tc, test_flags_parse_errors);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
