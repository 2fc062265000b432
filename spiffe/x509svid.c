/*
 * X.509-SVID minting (X509-SVID.md section 4), signed in the token by a
 * cubeid_ca; the workload key's custody policy; the files a workload reads;
 * the rotation time; strict durations.
 */
#include "config.h"

/* leaf_set_pubkey() uses the EC_KEY API, deprecated in OpenSSL 3, for speed
 * (as pkcs11/p11-evp.c does for its EC_KEY_METHOD). */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cubeid/log.h>

#include "spiffe/x509-internal.h"

#define SVID_MAX_DNS 32
#define DNS_NAME_MAX 253
#define SVID_TTL_MAX (10LL * 365 * 24 * 3600)

struct cubeid_x509_svid {
	cubeid_spiffe_id *id;
	X509 *leaf;
	STACK_OF(X509) * chain; /* leaf first (holds its own references) */
	cubeid_key *key;        /* NULL when a public key was certified */
	EVP_PKEY *priv;         /* exportable keys: the private key */
	bool delete_key;        /* a session object made for this SVID */
	int64_t not_before, not_after;
};

void
cubeid_x509_svid_free(cubeid_x509_svid *svid)
{
	if (svid == NULL)
		return;
	/* a session object made for this SVID goes with it, so that a
	 * long-running agent does not pile keys up in the token */
	if (svid->key != NULL && svid->delete_key)
		cubeid_key_delete(svid->key);
	cubeid_key_free(svid->key);
	EVP_PKEY_free(svid->priv);
	sk_X509_pop_free(svid->chain, X509_free);
	X509_free(svid->leaf);
	cubeid_spiffe_id_free(svid->id);
	free(svid);
}

X509 *
cubeid_x509_svid_leaf(const cubeid_x509_svid *svid)
{
	return svid != NULL ? svid->leaf : NULL;
}

STACK_OF(X509) * cubeid_x509_svid_chain(const cubeid_x509_svid *svid)
{
	return svid != NULL ? svid->chain : NULL;
}

const cubeid_spiffe_id *
cubeid_x509_svid_id(const cubeid_x509_svid *svid)
{
	return svid != NULL ? svid->id : NULL;
}

int64_t
cubeid_x509_svid_not_before(const cubeid_x509_svid *svid)
{
	return svid != NULL ? svid->not_before : 0;
}

int64_t
cubeid_x509_svid_not_after(const cubeid_x509_svid *svid)
{
	return svid != NULL ? svid->not_after : 0;
}

cubeid_key *
cubeid_x509_svid_key(const cubeid_x509_svid *svid)
{
	return svid != NULL ? svid->key : NULL;
}

/* A DNS SAN: 1..253 bytes of [A-Za-z0-9.-], optionally "*." first. */
static bool
dns_name_ok(const char *s)
{
	size_t i, len;

	if (s == NULL || (len = strlen(s)) == 0 || len > DNS_NAME_MAX)
		return false;
	i = strncmp(s, "*.", 2) == 0 ? 2 : 0;
	if (i == len)
		return false;
	for (; i < len; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '.'))
			return false;
	return s[len - 1] != '.' && s[0] != '.';
}

static int
make_workload_key(cubeid_ca *ca, const struct cubeid_svid_req *req, cubeid_x509_svid *svid,
                  EVP_PKEY **pub)
{
	struct cubeid_keygen_opts ko = {0};
	cubeid_token *tok = req->key_token != NULL ? req->key_token : cubeid_key_token(ca->key);
	int rc;

	*pub = NULL;
	if (req->public_key != NULL) {
		if (EVP_PKEY_up_ref(req->public_key) != 1)
			return CUBEID_ERR_INTERNAL;
		*pub = req->public_key;
		return CUBEID_OK;
	}
	ko.type = req->key_type != CUBEID_KEY_NONE ? req->key_type : CUBEID_KEY_EC_P256;
	ko.label = "cubeid-svid";
	ko.exportable = req->policy == CUBEID_SVID_KEY_EXPORTABLE;
	ko.persistent = req->policy == CUBEID_SVID_KEY_RESIDENT && req->persistent;
	if ((rc = cubeid_key_generate(tok, &ko, &svid->key)) != CUBEID_OK)
		return rc;
	svid->delete_key = !ko.persistent;
	if (ko.exportable && (rc = cubeid_key_export_private(svid->key, &svid->priv)) != CUBEID_OK)
		return rc;
	return cubeid_key_public(svid->key, pub);
}

/*
 * X509_set_pubkey(x, pub), fast for EC keys.  On OpenSSL 3.0, for a
 * provider-native key (which is what the token layer returns),
 * X509_PUBKEY_set() builds a DER encoder, encodes, then builds a decoder and
 * decodes the SubjectPublicKeyInfo back: about 2 M instructions, as much as
 * the token's whole key generation plus signature (bench/svid, callgrind).
 * For a legacy EC key it uses the EC method's pub_encode directly.  So hand
 * it a legacy copy of the public key; the certificate is the same bytes.
 * Other key types, or a failed conversion, take the general path.
 */
static int
leaf_set_pubkey(X509 *x, EVP_PKEY *pub)
{
	EC_KEY *ec = NULL;
	EVP_PKEY *legacy = NULL;
	int ok;

	if (EVP_PKEY_is_a(pub, "EC") && (ec = EVP_PKEY_get1_EC_KEY(pub)) != NULL &&
	    (legacy = EVP_PKEY_new()) != NULL && EVP_PKEY_assign_EC_KEY(legacy, ec) == 1) {
		ec = NULL; /* legacy owns it */
		ok = X509_set_pubkey(x, legacy);
		EVP_PKEY_free(legacy);
		return ok;
	}
	EC_KEY_free(ec);
	EVP_PKEY_free(legacy);
	ERR_clear_error();
	return X509_set_pubkey(x, pub);
}

static int
build_leaf(cubeid_ca *ca, const struct cubeid_svid_req *req, EVP_PKEY *pub, int64_t nb, int64_t na,
           X509 **out)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX v3;
	bool rsa = EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA;
	int rc = CUBEID_ERR_NOMEM;

	*out = NULL;
	if (x == NULL || name == NULL)
		goto out;
	rc = CUBEID_ERR_CRYPTO;
	if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"cubeid", -1,
	                               -1, 0) != 1)
		goto out;
	if (req->n_dns > 0 && strlen(req->dns[0]) <= 64 &&
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)req->dns[0],
	                               -1, -1, 0) != 1)
		goto out;
	if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_subject_name(x, name) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1 ||
	    leaf_set_pubkey(x, pub) != 1)
		goto out;
	if ((rc = x509_set_random_serial(x)) != CUBEID_OK ||
	    (rc = x509_set_validity(x, nb, na)) != 0)
		goto out;
	X509V3_set_ctx(&v3, ca->cert, x, NULL, NULL, 0);
	/* X509-SVID.md 4.3: digitalSignature; keyEncipherment too for RSA
	 * (TLS RSA key transport), as SPIRE does; never keyCertSign/cRLSign */
	if ((rc = x509_add_ext_conf(x, &v3, NID_basic_constraints, "critical,CA:FALSE")) != 0 ||
	    (rc = x509_add_ext_conf(x, &v3, NID_key_usage,
	                            rsa ? "critical,digitalSignature,keyEncipherment"
	                                : "critical,digitalSignature")) != 0 ||
	    (rc = x509_add_ext_conf(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth")) != 0 ||
	    (rc = x509_add_ext_conf(x, &v3, NID_subject_key_identifier, "hash")) != 0 ||
	    (rc = x509_add_ext_conf(x, &v3, NID_authority_key_identifier, "keyid:always")) != 0 ||
	    (rc = x509_add_san(x, cubeid_spiffe_id_string(req->id), req->dns, req->n_dns, false)) !=
	            0)
		goto out;
	if ((rc = x509_sign_with(x, ca->evp)) != CUBEID_OK)
		goto out;
	*out = x;
	x = NULL;
out:
	X509_free(x);
	X509_NAME_free(name);
	return rc;
}

int
cubeid_x509_svid_mint(cubeid_ca *ca, const struct cubeid_svid_req *req, cubeid_x509_svid **out)
{
	cubeid_x509_svid *svid = NULL;
	EVP_PKEY *pub = NULL;
	int64_t now, end, ttl, ca_nb, ca_na, nb, na;
	size_t i;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (ca == NULL || req == NULL || req->id == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (!cubeid_spiffe_id_member_of(req->id, ca->td)) {
		cubeid_error("%s is not in the CA's trust domain %s",
		             cubeid_spiffe_id_string(req->id), ca->td);
		return CUBEID_ERR_SPIFFE_ID;
	}
	/* X509-SVID.md 2: an SVID's ID has a path; the bare trust-domain ID
	 * names the CA, never a workload */
	if (cubeid_spiffe_id_is_trust_domain_id(req->id)) {
		cubeid_error("%s has no path: an X.509-SVID needs one",
		             cubeid_spiffe_id_string(req->id));
		return CUBEID_ERR_SPIFFE_ID;
	}
	if (req->n_dns > SVID_MAX_DNS || (req->n_dns > 0 && req->dns == NULL))
		return CUBEID_ERR_INVALID_ARG;
	for (i = 0; i < req->n_dns; i++)
		if (!dns_name_ok(req->dns[i]))
			return CUBEID_ERR_INVALID_ARG;
	ttl = req->ttl != 0 ? req->ttl : CUBEID_SVID_TTL_DEFAULT;
	if (ttl < 1 || ttl > SVID_TTL_MAX)
		return CUBEID_ERR_INVALID_ARG;
	now = x509_now(req->now);
	end = now + ttl;
	/* notAfter holds whole seconds: rounded down, an SVID minted at
	 * x.9 s would lose 0.9 s of its TTL (almost half of a 2 s one), and
	 * its rotation at half its real life would leave too little time to
	 * deliver and load the next one before it expires.  Round up, so
	 * that it lives at least its TTL. */
	if (req->now == 0) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		end = (int64_t)ts.tv_sec + ttl + (ts.tv_nsec > 0 ? 1 : 0);
		if (end < now + ttl)
			end = now + ttl;
	}
	if ((rc = x509_time_to_epoch(X509_get0_notBefore(ca->cert), &ca_nb)) != CUBEID_OK ||
	    (rc = x509_time_to_epoch(X509_get0_notAfter(ca->cert), &ca_na)) != CUBEID_OK)
		return rc;
	/* never outlive the signing certificate, nor start before it */
	na = end < ca_na ? end : ca_na;
	nb = now - CUBEID_SVID_BACKDATE > ca_nb ? now - CUBEID_SVID_BACKDATE : ca_nb;
	if (na <= now) {
		cubeid_error("the CA certificate has expired");
		return CUBEID_ERR_CA;
	}
	if ((svid = calloc(1, sizeof(*svid))) == NULL)
		return CUBEID_ERR_NOMEM;
	svid->not_before = nb;
	svid->not_after = na;
	if ((svid->id = cubeid_spiffe_id_dup(req->id)) == NULL ||
	    (svid->chain = sk_X509_new_null()) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	if ((rc = make_workload_key(ca, req, svid, &pub)) != CUBEID_OK)
		goto out;
	if ((rc = build_leaf(ca, req, pub, nb, na, &svid->leaf)) != CUBEID_OK)
		goto out;
	/* the chain: leaf, then the signing certificate unless it is the
	 * root, then the intermediates above it */
	rc = CUBEID_ERR_NOMEM;
	if (X509_up_ref(svid->leaf) != 1 || sk_X509_push(svid->chain, svid->leaf) <= 0)
		goto out;
	if (!ca->is_root) {
		if (X509_up_ref(ca->cert) != 1)
			goto out;
		if (sk_X509_push(svid->chain, ca->cert) <= 0) {
			X509_free(ca->cert);
			goto out;
		}
		for (i = 0; i < (size_t)sk_X509_num(ca->intermediates); i++) {
			X509 *x = sk_X509_value(ca->intermediates, (int)i);

			if (X509_up_ref(x) != 1)
				goto out;
			if (sk_X509_push(svid->chain, x) <= 0) {
				X509_free(x);
				goto out;
			}
		}
	}
	*out = svid;
	svid = NULL;
	rc = CUBEID_OK;
out:
	EVP_PKEY_free(pub);
	cubeid_x509_svid_free(svid);
	ERR_clear_error();
	return rc;
}

int
cubeid_x509_svid_chain_pem(const cubeid_x509_svid *svid, char **out, size_t *len)
{
	if (out != NULL)
		*out = NULL;
	if (svid == NULL)
		return CUBEID_ERR_INVALID_ARG;
	return cubeid_x509_chain_to_pem(svid->chain, out, len);
}

static int
no_private(const cubeid_x509_svid *svid)
{
	if (svid->key == NULL)
		return CUBEID_ERR_NOT_FOUND;
	return svid->priv == NULL ? CUBEID_ERR_P11_SENSITIVE : CUBEID_OK;
}

int
cubeid_x509_svid_key_pkcs8_der(const cubeid_x509_svid *svid, uint8_t **out, size_t *len)
{
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	unsigned char *der = NULL;
	int n, rc;

	if (out != NULL)
		*out = NULL;
	if (len != NULL)
		*len = 0;
	if (svid == NULL || out == NULL || len == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = no_private(svid)) != CUBEID_OK)
		return rc;
	if ((p8 = EVP_PKEY2PKCS8(svid->priv)) == NULL)
		return x509_ossl_error("EVP_PKEY2PKCS8");
	n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
	PKCS8_PRIV_KEY_INFO_free(p8);
	if (n <= 0)
		return x509_ossl_error("i2d_PKCS8_PRIV_KEY_INFO");
	if ((*out = malloc((size_t)n)) == NULL) {
		OPENSSL_clear_free(der, (size_t)n);
		return CUBEID_ERR_NOMEM;
	}
	memcpy(*out, der, (size_t)n);
	OPENSSL_clear_free(der, (size_t)n);
	*len = (size_t)n;
	return CUBEID_OK;
}

int
cubeid_x509_svid_key_pkcs8_pem(const cubeid_x509_svid *svid, char **out, size_t *len)
{
	BIO *bio = NULL;
	char *mem;
	long n;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (len != NULL)
		*len = 0;
	if (svid == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = no_private(svid)) != CUBEID_OK)
		return rc;
	if ((bio = BIO_new(BIO_s_secmem())) == NULL)
		return CUBEID_ERR_NOMEM;
	rc = CUBEID_ERR_NOMEM;
	if (PEM_write_bio_PKCS8PrivateKey(bio, svid->priv, NULL, NULL, 0, NULL, NULL) != 1) {
		rc = x509_ossl_error("PEM_write_bio_PKCS8PrivateKey");
		goto out;
	}
	n = BIO_get_mem_data(bio, &mem);
	if (n < 0 || (*out = malloc((size_t)n + 1)) == NULL)
		goto out;
	memcpy(*out, mem, (size_t)n);
	(*out)[n] = '\0';
	if (len != NULL)
		*len = (size_t)n;
	rc = CUBEID_OK;
out:
	BIO_free(bio); /* a secure-memory BIO wipes on free */
	return rc;
}

int
cubeid_x509_svid_key_uri(const cubeid_x509_svid *svid, char **out)
{
	if (out != NULL)
		*out = NULL;
	if (svid == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (svid->key == NULL)
		return CUBEID_ERR_NOT_FOUND;
	return cubeid_key_uri(svid->key, out);
}

int
cubeid_x509_svid_write_files(const cubeid_x509_svid *svid, const cubeid_x509_bundle *bundle,
                             const char *dir)
{
	char *path = NULL, *pem = NULL;
	size_t len = 0;
	int rc;

	if (svid == NULL || bundle == NULL || dir == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = cubeid_state_dir_prepare(dir)) != CUBEID_OK)
		return rc;
	/* the key first: a reader that sees the new certificate finds its key */
	if (svid->priv != NULL) {
		if ((rc = cubeid_x509_svid_key_pkcs8_pem(svid, &pem, &len)) != CUBEID_OK ||
		    (rc = path_join(dir, "svid_key.pem", &path)) != CUBEID_OK)
			goto out;
		rc = cubeid_atomic_write(path, pem, len, 0600);
		OPENSSL_cleanse(pem, len);
		free(pem);
		free(path);
		pem = path = NULL;
		if (rc != CUBEID_OK)
			goto out;
	}
	if ((rc = cubeid_x509_svid_chain_pem(svid, &pem, &len)) != CUBEID_OK ||
	    (rc = path_join(dir, "svid.pem", &path)) != CUBEID_OK ||
	    (rc = cubeid_atomic_write(path, pem, len, 0644)) != CUBEID_OK)
		goto out;
	free(pem);
	free(path);
	pem = path = NULL;
	if ((rc = cubeid_x509_bundle_to_pem(bundle, &pem, &len)) != CUBEID_OK ||
	    (rc = path_join(dir, "svid_bundle.pem", &path)) != CUBEID_OK)
		goto out;
	rc = cubeid_atomic_write(path, pem, len, 0644);
out:
	free(pem);
	free(path);
	return rc;
}

int
cubeid_rotation_time(int64_t not_before, int64_t not_after, int64_t *out)
{
	uint64_t r;
	int64_t life;
	double u;

	if (out != NULL)
		*out = 0;
	if (out == NULL || not_after <= not_before)
		return CUBEID_ERR_INVALID_ARG;
	life = not_after - not_before;
	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		return x509_ossl_error("RAND_bytes");
	/* 53 random bits -> u uniform in [0, 1] -> jitter in [-0.1, 0.1] */
	u = (double)(r >> 11) / (double)((1ULL << 53) - 1);
	*out = not_before + (int64_t)((double)life * (0.4 + 0.2 * u));
	return CUBEID_OK;
}

int
cubeid_duration_parse(const char *s, int64_t *seconds)
{
	int64_t v = 0, mul = 1;
	size_t i = 0;

	if (seconds != NULL)
		*seconds = 0;
	if (s == NULL || seconds == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (!isdigit((unsigned char)s[0]))
		return CUBEID_ERR_PARSE;
	for (; isdigit((unsigned char)s[i]); i++) {
		if (i >= 12) /* far beyond 10 years of seconds */
			return CUBEID_ERR_PARSE;
		v = v * 10 + (s[i] - '0');
	}
	switch (s[i]) {
	case '\0':
		break;
	case 's':
		i++;
		break;
	case 'm':
		mul = 60;
		i++;
		break;
	case 'h':
		mul = 3600;
		i++;
		break;
	case 'd':
		mul = 86400;
		i++;
		break;
	default:
		return CUBEID_ERR_PARSE;
	}
	if (s[i] != '\0' || v == 0 || v > SVID_TTL_MAX / mul)
		return CUBEID_ERR_PARSE;
	*seconds = v * mul;
	return CUBEID_OK;
}
