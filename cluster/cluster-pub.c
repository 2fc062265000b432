/*
 * Key publications: a node's public JWT keys, signed by its CA key, with
 * the CA's certificate chain, so that anyone holding the trust domain's
 * roots can tell a node's keys from an impostor's (<cubeid/cluster.h>).
 */
#include "config.h"

#include <cubeid/cluster.h>
#include <cubeid/jwt-keys.h>
#include <cubeid/log.h>

#include "spiffe/x509-internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define PUB_VERSION 1

struct pub_key {
	char *kid;
	cubeid_pub_use use;
	EVP_PKEY *pub;
};

struct cubeid_publication {
	char *td;
	char *node;
	int64_t iat, exp;
	STACK_OF(X509) * x5c;
	cubeid_jws *jws;
	struct pub_key *keys;
	size_t n;
};

#define WHY(s)                                                                                     \
	do {                                                                                       \
		if (why != NULL)                                                                   \
			*why = (s);                                                                \
	} while (0)

const char *
cubeid_pub_use_name(cubeid_pub_use use)
{
	switch (use) {
	case CUBEID_PUB_USE_JWT_SVID:
		return "jwt-svid";
	case CUBEID_PUB_USE_PICOD:
		return "picod";
	default:
		return NULL;
	}
}

cubeid_pub_use
cubeid_pub_use_from_name(const char *name)
{
	if (name == NULL)
		return CUBEID_PUB_USE_NONE;
	if (strcmp(name, "jwt-svid") == 0)
		return CUBEID_PUB_USE_JWT_SVID;
	if (strcmp(name, "picod") == 0)
		return CUBEID_PUB_USE_PICOD;
	return CUBEID_PUB_USE_NONE;
}

bool
cubeid_node_name_valid(const char *name)
{
	size_t i, n;

	if (name == NULL || (n = strlen(name)) == 0 || n > CUBEID_NODE_NAME_MAX)
		return false;
	for (i = 0; i < n; i++) {
		char ch = name[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
		bool inner = i > 0 && i + 1 < n;

		if (alnum || (ch == '-' && inner))
			continue;
		/* a dot between labels: each label starts and ends alphanumeric */
		if (ch == '.' && inner && name[i - 1] != '.' && name[i - 1] != '-' &&
		    name[i + 1] != '.' && name[i + 1] != '-')
			continue;
		return false;
	}
	return true;
}

void
cubeid_publication_free(cubeid_publication *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++) {
		free(p->keys[i].kid);
		EVP_PKEY_free(p->keys[i].pub);
	}
	free(p->keys);
	free(p->td);
	free(p->node);
	sk_X509_pop_free(p->x5c, X509_free);
	cubeid_jws_free(p->jws);
	free(p);
}

const char *
cubeid_publication_td(const cubeid_publication *p)
{
	return p != NULL ? p->td : NULL;
}

const char *
cubeid_publication_node(const cubeid_publication *p)
{
	return p != NULL ? p->node : NULL;
}

int64_t
cubeid_publication_iat(const cubeid_publication *p)
{
	return p != NULL ? p->iat : 0;
}

int64_t
cubeid_publication_exp(const cubeid_publication *p)
{
	return p != NULL ? p->exp : 0;
}

X509 *
cubeid_publication_signer(const cubeid_publication *p)
{
	return p != NULL && sk_X509_num(p->x5c) > 0 ? sk_X509_value(p->x5c, 0) : NULL;
}

size_t
cubeid_publication_count(const cubeid_publication *p)
{
	return p != NULL ? p->n : 0;
}

int
cubeid_publication_key_at(const cubeid_publication *p, size_t i, struct cubeid_pub_key *k)
{
	if (p == NULL || k == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (i >= p->n)
		return CUBEID_ERR_NOT_FOUND;
	k->kid = p->keys[i].kid;
	k->use = p->keys[i].use;
	k->pub = p->keys[i].pub;
	return CUBEID_OK;
}

/* ---- signing ---------------------------------------------------------- */

static int
x5c_append(json_t *arr, X509 *x)
{
	unsigned char *der = NULL;
	char *b64 = NULL;
	int n, rc = CUBEID_ERR_NOMEM;

	if ((n = i2d_X509(x, &der)) <= 0)
		return CUBEID_ERR_CRYPTO;
	if (cubeid_b64_std_encode_alloc(der, (size_t)n, &b64) == CUBEID_OK &&
	    json_array_append_new(arr, json_string(b64)) == 0)
		rc = CUBEID_OK;
	OPENSSL_free(der);
	free(b64);
	return rc;
}

int
cubeid_pub_sign(cubeid_ca *ca, const char *node, const struct cubeid_pub_key *keys, size_t n,
                int64_t now, int64_t ttl, char **out)
{
	json_t *claims = NULL, *x5c, *jkeys, *jwk;
	const ASN1_OCTET_STRING *skid;
	char kid[CUBEID_KID_LEN + 1], *hkid = NULL;
	cubeid_sig_alg alg;
	size_t i;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (ca == NULL || out == NULL || !cubeid_node_name_valid(node) || (n > 0 && keys == NULL) ||
	    n > CUBEID_PUB_KEYS_MAX || ttl < 1)
		return CUBEID_ERR_INVALID_ARG;
	now = x509_now(now);
	for (i = 0; i < n; i++) {
		if (keys[i].pub == NULL || keys[i].kid == NULL ||
		    cubeid_pub_use_name(keys[i].use) == NULL ||
		    cubeid_kid_from_pkey(keys[i].pub, kid) != CUBEID_OK ||
		    strcmp(kid, keys[i].kid) != 0)
			return CUBEID_ERR_INVALID_ARG;
	}
	alg = cubeid_jwt_keys_default_alg(cubeid_key_get_type(cubeid_ca_key(ca)));
	if ((claims = json_object()) == NULL || (x5c = json_array()) == NULL) {
		json_decref(claims);
		return CUBEID_ERR_NOMEM;
	}
	json_object_set_new(claims, "x5c", x5c);
	if ((jkeys = json_array()) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	json_object_set_new(claims, "keys", jkeys);
	if (json_object_set_new(claims, "v", json_integer(PUB_VERSION)) != 0 ||
	    json_object_set_new(claims, "td", json_string(cubeid_ca_trust_domain(ca))) != 0 ||
	    json_object_set_new(claims, "node", json_string(node)) != 0 ||
	    json_object_set_new(claims, "iat", json_integer((json_int_t)now)) != 0 ||
	    json_object_set_new(claims, "exp", json_integer((json_int_t)(now + ttl))) != 0) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	if ((rc = x5c_append(x5c, cubeid_ca_cert(ca))) != CUBEID_OK)
		goto out;
	for (i = 0; i < (size_t)sk_X509_num(cubeid_ca_intermediates(ca)); i++)
		if ((rc = x5c_append(x5c, sk_X509_value(cubeid_ca_intermediates(ca), (int)i))) !=
		    CUBEID_OK)
			goto out;
	for (i = 0; i < n; i++) {
		if ((rc = cubeid_jwk_from_pkey(keys[i].pub, keys[i].kid,
		                               cubeid_pub_use_name(keys[i].use), &jwk)) !=
		    CUBEID_OK)
			goto out;
		if (json_array_append_new(jkeys, jwk) != 0) {
			rc = CUBEID_ERR_NOMEM;
			goto out;
		}
	}
	/* the header's kid names the signing certificate, for humans */
	skid = X509_get0_subject_key_id(cubeid_ca_cert(ca));
	if (skid != NULL &&
	    (rc = cubeid_b64url_encode_alloc(ASN1_STRING_get0_data(skid),
	                                     (size_t)ASN1_STRING_length(skid), &hkid)) != CUBEID_OK)
		goto out;
	rc = cubeid_jws_encode(alg, hkid, CUBEID_PUB_TYP, claims, cubeid_jws_sign_key,
	                       cubeid_ca_key(ca), out);
out:
	free(hkid);
	json_decref(claims);
	return rc;
}

/* ---- parsing ---------------------------------------------------------- */

static int
get_i64(const json_t *o, const char *name, int64_t *out)
{
	const json_t *v = json_object_get(o, name);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return CUBEID_ERR_PUBLICATION;
	*out = (int64_t)json_integer_value(v);
	return CUBEID_OK;
}

static int
parse_x5c(const json_t *arr, STACK_OF(X509) * *out, const char **why)
{
	STACK_OF(X509) * sk;
	size_t i;
	int rc = CUBEID_OK;

	*out = NULL;
	if (!json_is_array(arr) || json_array_size(arr) == 0 ||
	    json_array_size(arr) > CUBEID_PUB_CERTS_MAX) {
		WHY("x5c must be an array of 1 to 4 certificates");
		return CUBEID_ERR_PUBLICATION;
	}
	if ((sk = sk_X509_new_null()) == NULL)
		return CUBEID_ERR_NOMEM;
	for (i = 0; i < json_array_size(arr) && rc == CUBEID_OK; i++) {
		const json_t *s = json_array_get(arr, i);
		uint8_t *der = NULL;
		const unsigned char *p;
		size_t len = 0;
		X509 *x = NULL;

		if (!json_is_string(s) ||
		    cubeid_b64_std_decode_alloc(json_string_value(s), json_string_length(s), &der,
		                                &len) != CUBEID_OK ||
		    len > CUBEID_X509_CERT_MAX) {
			WHY("x5c holds something that is not base64");
			rc = CUBEID_ERR_PUBLICATION;
		} else {
			p = der;
			x = d2i_X509(NULL, &p, (long)len);
			if (x == NULL || p != der + len) {
				WHY("x5c holds something that is not one DER certificate");
				rc = CUBEID_ERR_PUBLICATION;
				X509_free(x);
			} else if (sk_X509_push(sk, x) <= 0) {
				X509_free(x);
				rc = CUBEID_ERR_NOMEM;
			}
		}
		free(der);
	}
	ERR_clear_error();
	if (rc != CUBEID_OK) {
		sk_X509_pop_free(sk, X509_free);
		return rc;
	}
	*out = sk;
	return CUBEID_OK;
}

static int
parse_keys(cubeid_publication *p, const json_t *arr, const char **why)
{
	size_t i, j;

	if (!json_is_array(arr) || json_array_size(arr) > CUBEID_PUB_KEYS_MAX) {
		WHY("keys must be an array of at most 32 JWKs");
		return CUBEID_ERR_PUBLICATION;
	}
	if (json_array_size(arr) == 0)
		return CUBEID_OK;
	if ((p->keys = calloc(json_array_size(arr), sizeof(*p->keys))) == NULL)
		return CUBEID_ERR_NOMEM;
	for (i = 0; i < json_array_size(arr); i++) {
		const json_t *jwk = json_array_get(arr, i);
		const json_t *kid = json_object_get(jwk, "kid"), *use = json_object_get(jwk, "use");
		char want[CUBEID_KID_LEN + 1];
		struct pub_key *k = &p->keys[p->n];

		if (!json_is_object(jwk) || !json_is_string(kid) || !json_is_string(use)) {
			WHY("a key is not a JWK with a string kid and use");
			return CUBEID_ERR_PUBLICATION;
		}
		if ((k->use = cubeid_pub_use_from_name(json_string_value(use))) ==
		    CUBEID_PUB_USE_NONE) {
			WHY("a key's use is neither jwt-svid nor picod");
			return CUBEID_ERR_PUBLICATION;
		}
		if (cubeid_jwk_to_pkey(jwk, &k->pub) != CUBEID_OK) {
			WHY("a key is not a usable public JWK");
			return CUBEID_ERR_PUBLICATION;
		}
		p->n++;
		if (cubeid_kid_from_pkey(k->pub, want) != CUBEID_OK ||
		    strcmp(want, json_string_value(kid)) != 0) {
			WHY("a key's kid is not the hash of its public key");
			return CUBEID_ERR_PUBLICATION;
		}
		if ((k->kid = strdup(want)) == NULL)
			return CUBEID_ERR_NOMEM;
		for (j = 0; j + 1 < p->n; j++)
			if (strcmp(p->keys[j].kid, k->kid) == 0) {
				WHY("a kid appears twice");
				return CUBEID_ERR_PUBLICATION;
			}
	}
	return CUBEID_OK;
}

int
cubeid_pub_parse(const char *doc, size_t len, cubeid_publication **out, const char **why)
{
	cubeid_publication *p = NULL;
	const json_t *c, *v, *td, *node;
	const char *typ;
	int64_t ver = 0;
	int rc;

	if (out != NULL)
		*out = NULL;
	WHY("invalid argument");
	if (doc == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	/* a trailing newline (files) is not part of the token */
	while (len > 0 && (doc[len - 1] == '\n' || doc[len - 1] == '\r'))
		len--;
	if (len > CUBEID_PUB_MAX) {
		WHY("larger than 64 KiB");
		return CUBEID_ERR_TOO_LARGE;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return CUBEID_ERR_NOMEM;
	if ((rc = cubeid_jws_decode(doc, len, &p->jws)) != CUBEID_OK) {
		WHY("not a compact JWS with an allowed alg");
		goto out;
	}
	rc = CUBEID_ERR_PUBLICATION;
	typ = cubeid_jws_typ(p->jws);
	if (typ == NULL || strcmp(typ, CUBEID_PUB_TYP) != 0) {
		WHY("typ is not cubeid-publication+jwt");
		goto out;
	}
	c = cubeid_jws_claims(p->jws);
	v = json_object_get(c, "v");
	if (!json_is_integer(v) || (ver = (int64_t)json_integer_value(v)) != PUB_VERSION) {
		WHY("unknown publication version");
		goto out;
	}
	td = json_object_get(c, "td");
	node = json_object_get(c, "node");
	if (!json_is_string(td) ||
	    cubeid_trust_domain_validate(json_string_value(td), json_string_length(td), NULL) !=
	            CUBEID_OK) {
		WHY("td is not a trust domain name");
		goto out;
	}
	if (!json_is_string(node) || !cubeid_node_name_valid(json_string_value(node))) {
		WHY("node is not a valid node name");
		goto out;
	}
	if (get_i64(c, "iat", &p->iat) != CUBEID_OK || get_i64(c, "exp", &p->exp) != CUBEID_OK ||
	    p->exp <= p->iat) {
		WHY("iat and exp must be integers with iat < exp");
		goto out;
	}
	if ((p->td = strdup(json_string_value(td))) == NULL ||
	    (p->node = strdup(json_string_value(node))) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	if ((rc = parse_x5c(json_object_get(c, "x5c"), &p->x5c, why)) != CUBEID_OK ||
	    (rc = parse_keys(p, json_object_get(c, "keys"), why)) != CUBEID_OK)
		goto out;
	WHY("ok");
	*out = p;
	p = NULL;
out:
	cubeid_publication_free(p);
	return rc;
}

/* x5c[0] must be a CA of td: cA=true, keyCertSign, one URI SAN spiffe://td. */
static int
check_signer_cert(X509 *x, const char *td, const char **why)
{
	cubeid_spiffe_id *id = NULL;
	int rc = CUBEID_ERR_PUBLICATION;

	if (X509_check_ca(x) != 1 || (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) == 0) {
		WHY("the signing certificate is not a CA certificate");
		return rc;
	}
	if (cubeid_x509_spiffe_id(x, &id, NULL) != CUBEID_OK) {
		WHY("the signing certificate has no single SPIFFE ID");
		return rc;
	}
	if (!cubeid_spiffe_id_is_trust_domain_id(id) || !cubeid_spiffe_id_member_of(id, td))
		WHY("the signing certificate is not a CA of the trust domain");
	else
		rc = CUBEID_OK;
	cubeid_spiffe_id_free(id);
	return rc;
}

int
cubeid_pub_verify(const char *doc, size_t len, const cubeid_x509_bundle *roots, int64_t now,
                  unsigned leeway, cubeid_publication **out, const char **why)
{
	cubeid_publication *p = NULL;
	STACK_OF(X509) *inter = NULL;
	const char *reason = NULL;
	X509 *signer;
	int i, rc;

	if (out != NULL)
		*out = NULL;
	if (roots == NULL || out == NULL) {
		WHY("invalid argument");
		return CUBEID_ERR_INVALID_ARG;
	}
	if ((rc = cubeid_pub_parse(doc, len, &p, why)) != CUBEID_OK)
		return rc;
	now = x509_now(now);
	rc = CUBEID_ERR_PUBLICATION;
	if (strcmp(p->td, cubeid_x509_bundle_trust_domain(roots)) != 0) {
		WHY("published for another trust domain");
		goto out;
	}
	/* no sums: iat and exp may be anywhere up to INT64_MAX */
	if (p->iat > now && (uint64_t)p->iat - (uint64_t)now > leeway) {
		WHY("issued in the future (clock skew?)");
		goto out;
	}
	if (now >= p->exp && (uint64_t)now - (uint64_t)p->exp >= leeway) {
		WHY("expired");
		goto out;
	}
	signer = sk_X509_value(p->x5c, 0);
	if ((rc = check_signer_cert(signer, p->td, why)) != CUBEID_OK)
		goto out;
	/* the proof: the JWS verifies with the certificate's key ... */
	if ((rc = cubeid_jws_verify(p->jws, X509_get0_pubkey(signer))) != CUBEID_OK) {
		WHY("the signature does not verify with the signing certificate");
		goto out;
	}
	/* ... and the certificate chains to a root of the trust domain */
	if ((inter = sk_X509_new_null()) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	for (i = 1; i < sk_X509_num(p->x5c); i++)
		if (sk_X509_push(inter, sk_X509_value(p->x5c, i)) <= 0) {
			rc = CUBEID_ERR_NOMEM;
			goto out;
		}
	if ((rc = ca_verify_chain(signer, inter, roots, now, &reason)) != CUBEID_OK) {
		WHY(reason);
		goto out;
	}
	WHY("ok");
	*out = p;
	p = NULL;
out:
	sk_X509_free(inter);
	cubeid_publication_free(p);
	ERR_clear_error();
	return rc;
}

int
cubeid_pub_sign_jwt_keys(cubeid_ca *ca, const char *node, const cubeid_jwt_keys *k,
                         const struct cubeid_pub_key *extra, size_t n_extra, int64_t now,
                         int64_t ttl, char **out)
{
	struct cubeid_pub_key keys[CUBEID_PUB_KEYS_MAX];
	struct cubeid_jwt_key_info info;
	size_t i, n = 0;

	if (out != NULL)
		*out = NULL;
	if (k == NULL || (n_extra > 0 && extra == NULL))
		return CUBEID_ERR_INVALID_ARG;
	now = x509_now(now);
	for (i = 0; cubeid_jwt_keys_at(k, i, &info) == CUBEID_OK; i++) {
		if (!cubeid_jwt_keys_published(k, i, now))
			continue;
		if (n >= CUBEID_PUB_KEYS_MAX)
			return CUBEID_ERR_TOO_LARGE;
		keys[n].kid = info.kid;
		keys[n].use = CUBEID_PUB_USE_JWT_SVID;
		keys[n++].pub = info.pub;
	}
	for (i = 0; i < n_extra; i++) {
		if (n >= CUBEID_PUB_KEYS_MAX)
			return CUBEID_ERR_TOO_LARGE;
		keys[n++] = extra[i];
	}
	if (ttl == 0)
		ttl = cubeid_jwt_keys_max_ttl(k) + CUBEID_PUB_TTL_SLACK;
	return cubeid_pub_sign(ca, node, keys, n, now, ttl, out);
}
