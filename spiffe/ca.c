/*
 * The CA chain with its keys in the token: a self-signed root, and node
 * intermediates enrolled by CSR (generate in the node's token, sign at the
 * root holder, install on the node).
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cubeid/log.h>

#include "spiffe/x509-internal.h"

#define ROOT_BACKDATE 300 /* seconds of clock skew a new CA allows for */

/* ---- the object ------------------------------------------------------ */

int
ca_assemble(const char *td, cubeid_key *key, X509 *cert, STACK_OF(X509) * intermediates,
            cubeid_x509_bundle *bundle, bool is_root, cubeid_ca **out)
{
	cubeid_ca *ca = ca_alloc();
	int rc = CUBEID_ERR_NOMEM;

	*out = NULL;
	if (ca == NULL)
		goto fail;
	ca->key = key;
	ca->cert = cert;
	ca->intermediates = intermediates;
	ca->bundle = bundle;
	key = NULL;
	cert = NULL;
	intermediates = NULL;
	bundle = NULL;
	ca->is_root = is_root;
	if ((ca->td = strdup(td)) == NULL)
		goto fail;
	if (ca->intermediates == NULL && (ca->intermediates = sk_X509_new_null()) == NULL)
		goto fail;
	if ((rc = cubeid_key_evp(ca->key, &ca->evp)) != CUBEID_OK)
		goto fail;
	*out = ca;
	return CUBEID_OK;
fail:
	cubeid_ca_free(ca);
	cubeid_key_free(key);
	X509_free(cert);
	sk_X509_pop_free(intermediates, X509_free);
	cubeid_x509_bundle_free(bundle);
	return rc;
}

void
cubeid_ca_free(cubeid_ca *ca)
{
	if (ca == NULL)
		return;
	EVP_PKEY_free(ca->evp);
	cubeid_key_free(ca->key);
	X509_free(ca->cert);
	sk_X509_pop_free(ca->intermediates, X509_free);
	cubeid_x509_bundle_free(ca->bundle);
	free(ca->td);
	free(ca);
}

const char *
cubeid_ca_trust_domain(const cubeid_ca *ca)
{
	return ca != NULL ? ca->td : NULL;
}

bool
cubeid_ca_is_root(const cubeid_ca *ca)
{
	return ca != NULL && ca->is_root;
}

X509 *
cubeid_ca_cert(const cubeid_ca *ca)
{
	return ca != NULL ? ca->cert : NULL;
}

STACK_OF(X509) * cubeid_ca_intermediates(const cubeid_ca *ca)
{
	return ca != NULL ? ca->intermediates : NULL;
}

const cubeid_x509_bundle *
cubeid_ca_bundle(const cubeid_ca *ca)
{
	return ca != NULL ? ca->bundle : NULL;
}

cubeid_key *
cubeid_ca_key(const cubeid_ca *ca)
{
	return ca != NULL ? ca->key : NULL;
}

EVP_PKEY *
cubeid_ca_evp(const cubeid_ca *ca)
{
	return ca != NULL ? ca->evp : NULL;
}

/* ---- checks ---------------------------------------------------------- */

int
ca_key_matches(cubeid_key *key, X509 *cert)
{
	EVP_PKEY *pub = NULL;
	int rc;

	if ((rc = cubeid_key_public(key, &pub)) != CUBEID_OK)
		return rc;
	rc = EVP_PKEY_eq(pub, X509_get0_pubkey(cert)) == 1 ? CUBEID_OK : CUBEID_ERR_CA;
	if (rc != CUBEID_OK)
		cubeid_error("the CA certificate is not for the CA key");
	EVP_PKEY_free(pub);
	ERR_clear_error();
	return rc;
}

int
ca_verify_chain(X509 *cert, STACK_OF(X509) * intermediates, const cubeid_x509_bundle *bundle,
                int64_t now, const char **reason)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	size_t i;
	int rc = CUBEID_ERR_NOMEM, err;

	*reason = "out of memory";
	if (store == NULL || ctx == NULL)
		goto out;
	for (i = 0; i < cubeid_x509_bundle_count(bundle); i++)
		if (X509_STORE_add_cert(store, cubeid_x509_bundle_at(bundle, i)) != 1)
			goto out;
	if (X509_STORE_CTX_init(ctx, store, cert, intermediates) != 1)
		goto out;
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
	X509_VERIFY_PARAM_set_depth(X509_STORE_CTX_get0_param(ctx), CUBEID_X509_CHAIN_CERTS);
	X509_STORE_CTX_set_time(ctx, 0, (time_t)x509_now(now));
	if (X509_verify_cert(ctx) == 1) {
		*reason = "ok";
		rc = CUBEID_OK;
		goto out;
	}
	err = X509_STORE_CTX_get_error(ctx);
	*reason = X509_verify_cert_error_string(err);
	rc = err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID
	             ? CUBEID_ERR_X509_EXPIRED
	             : CUBEID_ERR_X509_VERIFY;
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	ERR_clear_error();
	return rc;
}

/* ---- building -------------------------------------------------------- */

int
ca_td_uri(const char *td, char **out)
{
	*out = NULL;
	if (cubeid_trust_domain_validate(td, strlen(td), NULL) != CUBEID_OK)
		return CUBEID_ERR_SPIFFE_ID;
	if (asprintf(out, CUBEID_SPIFFE_SCHEME "%s", td) < 0) {
		*out = NULL;
		return CUBEID_ERR_NOMEM;
	}
	return CUBEID_OK;
}

/* "O=cubeid, CN=<cn>" with cn cut to the 64 characters X.520 allows. */
X509_NAME *
ca_make_name(const char *cn)
{
	X509_NAME *name = X509_NAME_new();
	char buf[65];

	snprintf(buf, sizeof(buf), "%s", cn);
	if (name == NULL ||
	    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"cubeid", -1,
	                               -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)buf, -1,
	                               -1, 0) != 1) {
		X509_NAME_free(name);
		return NULL;
	}
	return name;
}

/* The CA extensions; issuer NULL for a self-signed certificate. */
static int
add_ca_exts(X509 *x, X509 *issuer, const char *uri, bool leaf_ca)
{
	X509V3_CTX v3;
	int rc;

	X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	if ((rc = x509_add_ext_conf(x, &v3, NID_basic_constraints,
	                            leaf_ca ? "critical,CA:TRUE,pathlen:0"
	                                    : "critical,CA:TRUE,pathlen:1")) != CUBEID_OK)
		return rc;
	if ((rc = x509_add_ext_conf(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign")) !=
	    CUBEID_OK)
		return rc;
	if ((rc = x509_add_ext_conf(x, &v3, NID_subject_key_identifier, "hash")) != CUBEID_OK)
		return rc;
	if ((rc = x509_add_ext_conf(x, &v3, NID_authority_key_identifier, "keyid:always")) !=
	    CUBEID_OK)
		return rc;
	return x509_add_san(x, uri, NULL, 0, false);
}

static cubeid_key_type
opt_key_type(const struct cubeid_ca_opts *opts)
{
	return opts != NULL && opts->key_type != CUBEID_KEY_NONE ? opts->key_type
	                                                         : CUBEID_KEY_EC_P256;
}

static int
opt_ttl(const struct cubeid_ca_opts *opts, int64_t def, int64_t *ttl)
{
	*ttl = opts != NULL && opts->ttl != 0 ? opts->ttl : def;
	if (*ttl < 60 || *ttl > 20LL * 365 * 24 * 3600)
		return CUBEID_ERR_INVALID_ARG;
	return CUBEID_OK;
}

int
ca_gen_key(cubeid_token *tok, const struct cubeid_ca_opts *opts, const char *kind, const char *td,
           cubeid_key **key)
{
	struct cubeid_keygen_opts ko = {0};
	int64_t now = opts != NULL && opts->now != 0 ? opts->now : (int64_t)time(NULL);
	char *label = NULL;
	uint8_t rnd[4];
	int rc;

	/* A node makes a new intermediate key at every renewal, and the old
	 * ones stay in the token until pruned: each gets a label of its own
	 * (the time it was made), so that a label still names one key. */
	if (opts != NULL && opts->label != NULL)
		label = strdup(opts->label);
	else if (strcmp(kind, "intermediate") != 0) {
		if (asprintf(&label, "cubeid-%s-%s", kind, td) < 0)
			label = NULL;
	} else if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return CUBEID_ERR_CRYPTO;
	else if (asprintf(&label, "cubeid-%s-%s-%" PRId64 "-%02x%02x%02x%02x", kind, td, now,
	                  rnd[0], rnd[1], rnd[2], rnd[3]) < 0)
		label = NULL;
	if (label == NULL)
		return CUBEID_ERR_NOMEM;
	ko.type = opt_key_type(opts);
	ko.label = label;
	ko.persistent = true;
	ko.exportable = false;
	rc = cubeid_key_generate(tok, &ko, key);
	free(label);
	return rc;
}

int
cubeid_ca_root_create(cubeid_token *tok, const char *td, const struct cubeid_ca_opts *opts,
                      cubeid_ca **out)
{
	cubeid_key *key = NULL;
	EVP_PKEY *pub = NULL, *evp = NULL;
	X509 *x = NULL;
	X509_NAME *name = NULL;
	cubeid_x509_bundle *bundle = NULL;
	char *uri = NULL, *cn = NULL;
	int64_t ttl, now;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (tok == NULL || td == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = ca_td_uri(td, &uri)) != CUBEID_OK)
		return rc;
	if ((rc = opt_ttl(opts, CUBEID_CA_ROOT_TTL_DEFAULT, &ttl)) != CUBEID_OK)
		goto out;
	now = x509_now(opts != NULL ? opts->now : 0);
	if ((rc = cubeid_x509_bundle_new(td, &bundle)) != CUBEID_OK)
		goto out;
	if ((rc = ca_gen_key(tok, opts, "root", td, &key)) != CUBEID_OK)
		goto out;
	if ((rc = cubeid_key_public(key, &pub)) != CUBEID_OK ||
	    (rc = cubeid_key_evp(key, &evp)) != CUBEID_OK)
		goto out;
	rc = CUBEID_ERR_NOMEM;
	if (asprintf(&cn, "cubeid root %s", td) < 0) {
		cn = NULL;
		goto out;
	}
	if ((x = X509_new()) == NULL || (name = ca_make_name(cn)) == NULL)
		goto out;
	rc = CUBEID_ERR_CRYPTO;
	if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_subject_name(x, name) != 1 ||
	    X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, pub) != 1)
		goto out;
	if ((rc = x509_set_random_serial(x)) != CUBEID_OK ||
	    (rc = x509_set_validity(x, now - ROOT_BACKDATE, now + ttl)) != CUBEID_OK ||
	    (rc = add_ca_exts(x, NULL, uri, false)) != CUBEID_OK ||
	    (rc = x509_sign_with(x, evp)) != CUBEID_OK)
		goto out;
	if ((rc = cubeid_x509_bundle_add(bundle, x)) != CUBEID_OK)
		goto out;
	rc = ca_assemble(td, key, x, NULL, bundle, true, out);
	key = NULL;
	x = NULL;
	bundle = NULL;
out:
	if (rc != CUBEID_OK && key != NULL)
		cubeid_key_delete(key); /* do not leave an orphan key on the token */
	cubeid_key_free(key);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(evp);
	X509_free(x);
	X509_NAME_free(name);
	cubeid_x509_bundle_free(bundle);
	free(uri);
	free(cn);
	return rc;
}

/* ---- enrolment ------------------------------------------------------- */

/* A CSR's key must be one we would mint with: EC P-256/P-384 or RSA >= 2048. */
static bool
ca_key_acceptable(EVP_PKEY *pk)
{
	int id = EVP_PKEY_get_base_id(pk), bits = EVP_PKEY_get_bits(pk);

	if (id == EVP_PKEY_EC)
		return bits == 256 || bits == 384;
	if (id == EVP_PKEY_RSA)
		return bits >= 2048 && bits <= 8192;
	return false;
}

/* Every subjectAltName in the CSR must be exactly the URI td_id. */
static int
csr_check_san(X509_REQ *req, const char *td_id)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	int i, j, rc = CUBEID_OK;

	for (i = 0; rc == CUBEID_OK && i < sk_X509_EXTENSION_num(exts); i++) {
		X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
		GENERAL_NAMES *gens;

		if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name)
			continue;
		if ((gens = X509V3_EXT_d2i(ext)) == NULL) {
			rc = CUBEID_ERR_X509;
			break;
		}
		for (j = 0; j < sk_GENERAL_NAME_num(gens); j++) {
			GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, j);
			const ASN1_IA5STRING *s = gn->d.uniformResourceIdentifier;

			if (gn->type != GEN_URI || (size_t)ASN1_STRING_length(s) != strlen(td_id) ||
			    memcmp(ASN1_STRING_get0_data(s), td_id, strlen(td_id)) != 0) {
				cubeid_error("CSR asks for a name other than %s", td_id);
				rc = CUBEID_ERR_X509;
				break;
			}
		}
		GENERAL_NAMES_free(gens);
	}
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return rc;
}

int
cubeid_ca_sign_csr(cubeid_ca *ca, const char *csr, size_t csr_len,
                   const struct cubeid_ca_opts *opts, char **out_pem)
{
	BIO *bio = NULL;
	X509_REQ *req = NULL;
	X509 *x = NULL;
	X509_NAME *name = NULL;
	EVP_PKEY *pub;
	STACK_OF(X509) *pair = NULL;
	char *uri = NULL;
	int64_t ttl, now, ca_na, na;
	int rc;

	if (out_pem != NULL)
		*out_pem = NULL;
	if (ca == NULL || csr == NULL || out_pem == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (!ca->is_root) {
		cubeid_error("only a root CA signs intermediates (this CA is an intermediate)");
		return CUBEID_ERR_CA;
	}
	if (csr_len > CUBEID_CSR_MAX)
		return CUBEID_ERR_TOO_LARGE;
	if ((rc = opt_ttl(opts, CUBEID_CA_INTERMEDIATE_TTL_DEFAULT, &ttl)) != CUBEID_OK)
		return rc;
	if ((rc = ca_td_uri(ca->td, &uri)) != CUBEID_OK)
		return rc;
	now = x509_now(opts != NULL ? opts->now : 0);
	rc = CUBEID_ERR_X509;
	if ((bio = BIO_new_mem_buf(csr, (int)csr_len)) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	if ((req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL)) == NULL) {
		cubeid_error("not a PEM certificate request");
		goto out;
	}
	pub = X509_REQ_get0_pubkey(req);
	if (pub == NULL || X509_REQ_verify(req, pub) != 1) {
		cubeid_error("the CSR's signature does not verify");
		goto out;
	}
	if (!ca_key_acceptable(pub)) {
		cubeid_error("the CSR's key is not EC P-256/P-384 or RSA 2048+");
		goto out;
	}
	if ((rc = csr_check_san(req, uri)) != CUBEID_OK)
		goto out;
	if ((rc = x509_time_to_epoch(X509_get0_notAfter(ca->cert), &ca_na)) != CUBEID_OK)
		goto out;
	na = now + ttl < ca_na ? now + ttl : ca_na; /* never outlive the root */
	if (na <= now) {
		cubeid_error("the root CA certificate has expired");
		rc = CUBEID_ERR_CA;
		goto out;
	}
	rc = CUBEID_ERR_NOMEM;
	if ((x = X509_new()) == NULL)
		goto out;
	if (X509_NAME_entry_count(X509_REQ_get_subject_name(req)) > 0)
		name = X509_NAME_dup(X509_REQ_get_subject_name(req));
	else
		name = ca_make_name("cubeid intermediate");
	if (name == NULL)
		goto out;
	rc = CUBEID_ERR_CRYPTO;
	if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_subject_name(x, name) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1 ||
	    X509_set_pubkey(x, pub) != 1)
		goto out;
	if ((rc = x509_set_random_serial(x)) != CUBEID_OK ||
	    (rc = x509_set_validity(x, now - CUBEID_SVID_BACKDATE, na)) != CUBEID_OK ||
	    (rc = add_ca_exts(x, ca->cert, uri, true)) != CUBEID_OK ||
	    (rc = x509_sign_with(x, ca->evp)) != CUBEID_OK)
		goto out;
	rc = CUBEID_ERR_NOMEM;
	if ((pair = sk_X509_new_null()) == NULL || sk_X509_push(pair, x) <= 0 ||
	    sk_X509_push(pair, ca->cert) <= 0)
		goto out;
	rc = cubeid_x509_chain_to_pem(pair, out_pem, NULL);
out:
	sk_X509_free(pair); /* borrowed */
	X509_free(x);
	X509_NAME_free(name);
	X509_REQ_free(req);
	BIO_free(bio);
	free(uri);
	ERR_clear_error();
	return rc;
}
