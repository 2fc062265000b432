/*
 * OpenSSL glue for the TLS loader: contexts whose certificate callback
 * presents the loader's current pair (Go's GetCertificate /
 * GetClientCertificate) and whose verification callback checks the peer as
 * an X.509-SVID against the current bundle, then against the allow-list.
 * Why a peer was refused is kept on its SSL object and logged.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cubeid/log.h>

#include "tls/tls-internal.h"

static bool
allowed(const cubeid_tls *tls, const cubeid_spiffe_id *id)
{
	size_t i;

	for (i = 0; i < tls->n_allow; i++)
		if (cubeid_tls_allow_match(tls->allow[i], id))
			return true;
	return false;
}

/* ---- per-connection errors -------------------------------------------- */

struct peer_err {
	int code;
	bool logged;
	char why[768];
};

static pthread_once_t idx_once = PTHREAD_ONCE_INIT;
static int ctx_idx = -1, ssl_idx = -1;

static void
ctx_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	cubeid_tls_free(ptr);
}

static void
ssl_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	free(ptr);
}

static void
idx_init(void)
{
	ctx_idx = SSL_CTX_get_ex_new_index(0, "cubeid_tls", NULL, NULL, ctx_ex_free);
	ssl_idx = SSL_get_ex_new_index(0, "cubeid peer error", NULL, NULL, ssl_ex_free);
}

static const char *
role(const SSL *ssl)
{
	return SSL_is_server(ssl) ? "client" : "server";
}

/* "serial 1A2B.., valid 2026-12-08T01:04:02Z to 2026-12-08T01:04:05Z" of x
 * into buf: with the time of the check (certs_desc), what makes a failure
 * at a rotation diagnosable (which certificate, from which set, how close
 * to its end). */
static const char *
cert_desc(X509 *x, char *buf, size_t size)
{
	char nb[32] = "?", na[32] = "?", sn[20] = "?";
	const ASN1_INTEGER *ai;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	struct tm tm;

	if (x == NULL) {
		snprintf(buf, size, "none");
		return buf;
	}
	if ((ai = X509_get0_serialNumber(x)) != NULL &&
	    (bn = ASN1_INTEGER_to_BN(ai, NULL)) != NULL && (hex = BN_bn2hex(bn)) != NULL)
		snprintf(sn, sizeof(sn), "%.16s%s", hex, strlen(hex) > 16 ? ".." : "");
	if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) == 1)
		strftime(nb, sizeof(nb), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(buf, size, "serial %s, valid %s to %s", sn, nb, na);
	OPENSSL_free(hex);
	BN_free(bn);
	ERR_clear_error();
	return buf;
}

/* "at T; the peer's: ...; ours: ..." into buf. */
static const char *
certs_desc(X509 *peer, X509 *own, char *buf, size_t size)
{
	char p[128], o[128], now[40];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "at %s.%03ldZ; the peer's certificate: %s; ours: %s", now,
	         ts.tv_nsec / 1000000, cert_desc(peer, p, sizeof(p)), cert_desc(own, o, sizeof(o)));
	return buf;
}

/* Record code/why on ssl (the first failure wins) and log it. */
static int record(SSL *ssl, int code, bool log, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int
record(SSL *ssl, int code, bool log, const char *fmt, ...)
{
	struct peer_err *pe = SSL_get_ex_data(ssl, ssl_idx);
	va_list ap;

	if (pe == NULL) {
		if ((pe = calloc(1, sizeof(*pe))) == NULL)
			return code;
		if (SSL_set_ex_data(ssl, ssl_idx, pe) != 1) {
			free(pe);
			return code;
		}
	} else if (pe->code != CUBEID_OK) {
		return pe->code;
	}
	pe->code = code;
	va_start(ap, fmt);
	vsnprintf(pe->why, sizeof(pe->why), fmt, ap);
	va_end(ap);
	if (log) {
		cubeid_warn("tls: handshake with the %s failed: %s (%s)", role(ssl), pe->why,
		            cubeid_strerror(code));
		pe->logged = true;
	}
	return code;
}

int
cubeid_tls_peer_error(const SSL *ssl, const char **why)
{
	struct peer_err *pe;

	if (why != NULL)
		*why = "ok";
	pthread_once(&idx_once, idx_init);
	if (ssl == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((pe = SSL_get_ex_data(ssl, ssl_idx)) == NULL || pe->code == CUBEID_OK)
		return CUBEID_OK;
	if (why != NULL)
		*why = pe->why;
	return pe->code;
}

int
cubeid_tls_handshake_error(SSL *ssl, int ret, const char **why)
{
	unsigned long e, found = 0;
	int err, rc, reason;
	const char *what = NULL;
	char cd[400];

	if (why != NULL)
		*why = "ok";
	pthread_once(&idx_once, idx_init);
	if (ssl == NULL)
		return CUBEID_ERR_INVALID_ARG;
	err = SSL_get_error(ssl, ret);
	if (ret > 0 || err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ||
	    err == SSL_ERROR_WANT_X509_LOOKUP)
		return CUBEID_OK;
	/* the verification callback already said why */
	if ((rc = cubeid_tls_peer_error(ssl, why)) != CUBEID_OK) {
		ERR_clear_error();
		return rc;
	}
	/* the OpenSSL reason: the first SSL-library one in the queue */
	while ((e = ERR_get_error()) != 0)
		if (found == 0 && ERR_GET_LIB(e) == ERR_LIB_SSL)
			found = e;
	reason = found != 0 ? ERR_GET_REASON(found) : 0;
	certs_desc(SSL_get0_peer_certificate(ssl), SSL_get_certificate(ssl), cd, sizeof(cd));
	if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		rc = record(ssl, CUBEID_ERR_TLS_NO_PEER_CERT, true,
		            "the %s presented no certificate", role(ssl));
	} else if (reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED) {
		rc = record(ssl, CUBEID_ERR_TLS, true,
		            "the %s requires a certificate and we have none to present", role(ssl));
	} else if (reason == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
	           reason == SSL_R_TLSV1_ALERT_UNKNOWN_CA ||
	           reason == SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED ||
	           reason == SSL_R_TLSV1_ALERT_ACCESS_DENIED ||
	           reason == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE) {
		what = ERR_reason_error_string(found);
		rc = record(ssl, CUBEID_ERR_TLS, true, "the %s refused us: %s; %s", role(ssl),
		            what != NULL ? what : "alert", cd);
	} else if (found != 0) {
		what = ERR_reason_error_string(found);
		rc = record(ssl, CUBEID_ERR_TLS, true, "%s; %s",
		            what != NULL ? what : "unknown OpenSSL error", cd);
	} else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN) {
		rc = record(ssl, CUBEID_ERR_TLS, true,
		            "the %s closed the connection during the handshake; %s", role(ssl), cd);
	} else {
		rc = record(ssl, CUBEID_ERR_TLS, true,
		            "handshake with the %s failed (SSL error %d); %s", role(ssl), err, cd);
	}
	cubeid_tls_peer_error(ssl, why);
	return rc;
}

int
cubeid_tls_peer_id(const SSL *ssl, cubeid_spiffe_id **out)
{
	X509 *peer;

	if (out != NULL)
		*out = NULL;
	if (ssl == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((peer = SSL_get0_peer_certificate(ssl)) == NULL)
		return CUBEID_ERR_TLS_NO_PEER_CERT;
	if (!SSL_is_init_finished(ssl) || SSL_get_verify_result(ssl) != X509_V_OK)
		return CUBEID_ERR_TLS;
	return cubeid_x509_spiffe_id(peer, out, NULL);
}

/* ---- callbacks -------------------------------------------------------- */

/* Present the current pair; runs at every handshake (both sides). */
static int
cert_cb(SSL *ssl, void *arg)
{
	cubeid_tls *tls = arg;
	struct tls_state *s = tls_current(tls);
	int ok;

	if (s == NULL)
		return 0;
	ok = SSL_use_cert_and_key(ssl, s->leaf, s->key, s->inter, 1);
	tls_state_unref(s);
	if (ok != 1) {
		record(ssl, CUBEID_ERR_TLS, true, "cannot present our certificate");
		return 0;
	}
	return 1;
}

/* Check the peer's chain as an X.509-SVID against the current bundle, then
 * its ID against the allow-list (replaces OpenSSL's chain verification). */
static int
verify_cb(X509_STORE_CTX *xctx, void *arg)
{
	cubeid_tls *tls = arg;
	SSL *ssl = X509_STORE_CTX_get_ex_data(xctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	X509 *leaf = X509_STORE_CTX_get0_cert(xctx);
	STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(xctx), *chain = NULL;
	struct tls_state *s = tls_current(tls);
	cubeid_spiffe_id *id = NULL;
	const char *why = "ok", *td;
	int rc, i, xerr = X509_V_ERR_CERT_REJECTED;
	char cd[400];

	if (ssl == NULL || leaf == NULL || s == NULL) {
		xerr = X509_V_ERR_UNSPECIFIED;
		goto fail_quiet;
	}
	td = cubeid_x509_bundle_trust_domain(s->bundle);
	/* the chain as the peer sent it, leaf first */
	if ((chain = sk_X509_new_null()) == NULL || sk_X509_push(chain, leaf) <= 0)
		goto fail_quiet;
	for (i = 0; i < sk_X509_num(sent); i++)
		if (sk_X509_value(sent, i) != leaf &&
		    sk_X509_push(chain, sk_X509_value(sent, i)) <= 0)
			goto fail_quiet;
	rc = cubeid_x509_svid_verify(chain, s->bundle, 0, &id, &why);
	if (rc != CUBEID_OK)
		certs_desc(leaf, s->leaf, cd, sizeof(cd));
	/* a peer of another trust domain has no CA of ours */
	if (rc == CUBEID_ERR_X509_SVID && cubeid_x509_spiffe_id(leaf, &id, NULL) == CUBEID_OK &&
	    !cubeid_spiffe_id_member_of(id, td)) {
		xerr = X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
		record(ssl, CUBEID_ERR_TLS_UNKNOWN_CA, true,
		       "%s is in trust domain %s; only %s is trusted; %s",
		       cubeid_spiffe_id_string(id), cubeid_spiffe_id_trust_domain(id), td, cd);
		goto fail;
	}
	switch (rc) {
	case CUBEID_OK:
		if (allowed(tls, id))
			goto ok;
		record(ssl, CUBEID_ERR_TLS_PEER_ID, true, "%s is not on the allow-list",
		       cubeid_spiffe_id_string(id));
		break;
	case CUBEID_ERR_X509_VERIFY:
		xerr = X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
		record(ssl, CUBEID_ERR_TLS_UNKNOWN_CA, true,
		       "the certificate chain does not lead to a CA of %s: %s; %s", td, why, cd);
		break;
	case CUBEID_ERR_X509_EXPIRED:
		xerr = X509_V_ERR_CERT_HAS_EXPIRED;
		record(ssl, CUBEID_ERR_TLS_PEER_EXPIRED, true, "%s; %s", why, cd);
		break;
	case CUBEID_ERR_NOMEM:
		xerr = X509_V_ERR_OUT_OF_MEM;
		goto fail_quiet;
	default:
		record(ssl, CUBEID_ERR_X509_SVID, true, "not a valid X.509-SVID: %s; %s", why, cd);
		break;
	}
fail:
	X509_STORE_CTX_set_error(xctx, xerr);
	cubeid_spiffe_id_free(id);
	sk_X509_free(chain);
	tls_state_unref(s);
	return 0;
fail_quiet:
	if (ssl != NULL)
		record(ssl, CUBEID_ERR_TLS, true, "cannot verify the certificate (internal error)");
	goto fail;
ok:
	X509_STORE_CTX_set_error(xctx, X509_V_OK);
	cubeid_spiffe_id_free(id);
	sk_X509_free(chain);
	tls_state_unref(s);
	return 1;
}

/* ---- contexts --------------------------------------------------------- */

static int
make_ctx(cubeid_tls *tls, bool server, SSL_CTX **out)
{
	SSL_CTX *ctx;

	if (out != NULL)
		*out = NULL;
	if (tls == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	pthread_once(&idx_once, idx_init);
	if (ctx_idx < 0 || ssl_idx < 0)
		return CUBEID_ERR_NOMEM;
	if ((ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method())) == NULL)
		return CUBEID_ERR_NOMEM;
	if (SSL_CTX_set_min_proto_version(ctx, tls->tls12 ? TLS1_2_VERSION : TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
		SSL_CTX_free(ctx);
		return CUBEID_ERR_TLS;
	}
	/* every connection is a full handshake checked against the current
	 * bundle and allow-list: no session resumption */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (server)
		SSL_CTX_set_num_tickets(ctx, 0);
	/* the state carries the whole chain; OpenSSL need not build one from
	 * its (empty) store at every handshake */
	SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
	SSL_CTX_set_cert_cb(ctx, cert_cb, tls);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_cert_verify_callback(ctx, verify_cb, tls);
	SSL_CTX_set_ex_data(ctx, ctx_idx, tls_ref(tls));
	*out = ctx;
	return CUBEID_OK;
}

int
cubeid_tls_server_ctx(cubeid_tls *tls, SSL_CTX **out)
{
	return make_ctx(tls, true, out);
}

int
cubeid_tls_client_ctx(cubeid_tls *tls, SSL_CTX **out)
{
	return make_ctx(tls, false, out);
}
