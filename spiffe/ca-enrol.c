/*
 * Enrolment of a node intermediate through the state directory
 * (docs/design.md, "Enrolment of a node intermediate"): the CSR for a new
 * intermediate key, and installing the certificate signed for it.  Both
 * read and write ca.conf (spiffe/state.c); the CA itself (spiffe/ca.c)
 * knows nothing of the state directory.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cubeid/log.h>

#include "spiffe/x509-internal.h"

static int
req_to_pem(X509_REQ *req, char **out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *mem;
	long n;
	int rc = CUBEID_ERR_NOMEM;

	*out = NULL;
	if (bio == NULL)
		return rc;
	if (PEM_write_bio_X509_REQ(bio, req) != 1) {
		rc = x509_ossl_error("PEM_write_bio_X509_REQ");
		goto out;
	}
	n = BIO_get_mem_data(bio, &mem);
	if (n < 0 || (*out = malloc((size_t)n + 1)) == NULL)
		goto out;
	memcpy(*out, mem, (size_t)n);
	(*out)[n] = '\0';
	rc = CUBEID_OK;
out:
	BIO_free(bio);
	return rc;
}

int
cubeid_ca_csr_create(cubeid_token *tok, const char *state_dir, const char *td,
                     const struct cubeid_ca_opts *opts, char **csr_pem)
{
	struct ca_conf c = {0};
	cubeid_key *key = NULL;
	EVP_PKEY *pub = NULL, *evp = NULL;
	X509_REQ *req = NULL;
	X509_NAME *name = NULL;
	GENERAL_NAMES *san = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	char *uri = NULL, *cn = NULL, *key_uri = NULL, host[64] = "node";
	int rc;

	if (csr_pem != NULL)
		*csr_pem = NULL;
	if (tok == NULL || td == NULL || csr_pem == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((rc = ca_td_uri(td, &uri)) != CUBEID_OK)
		return rc;
	state_dir = cubeid_state_dir(state_dir);
	if ((rc = cubeid_state_dir_prepare(state_dir)) != CUBEID_OK)
		goto out;
	rc = ca_conf_read(state_dir, &c);
	if (rc == CUBEID_ERR_NOT_FOUND) {
		if ((c.td = strdup(td)) == NULL) {
			rc = CUBEID_ERR_NOMEM;
			goto out;
		}
	} else if (rc != CUBEID_OK) {
		goto out;
	} else if (strcmp(c.td, td) != 0) {
		cubeid_error("%s holds a CA for trust domain %s, not %s", state_dir, c.td, td);
		rc = CUBEID_ERR_CA;
		goto out;
	}
	if ((rc = ca_gen_key(tok, opts, "intermediate", td, &key)) != CUBEID_OK)
		goto out;
	if ((rc = cubeid_key_public(key, &pub)) != CUBEID_OK ||
	    (rc = cubeid_key_evp(key, &evp)) != CUBEID_OK ||
	    (rc = cubeid_key_uri(key, &key_uri)) != CUBEID_OK)
		goto out;
	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "node");
	host[sizeof(host) - 1] = '\0';
	rc = CUBEID_ERR_NOMEM;
	if (asprintf(&cn, "cubeid intermediate %s", host) < 0) {
		cn = NULL;
		goto out;
	}
	if ((req = X509_REQ_new()) == NULL || (name = ca_make_name(cn)) == NULL ||
	    (exts = sk_X509_EXTENSION_new_null()) == NULL)
		goto out;
	if ((rc = x509_make_san(uri, NULL, 0, &san)) != CUBEID_OK)
		goto out;
	rc = CUBEID_ERR_CRYPTO;
	if (X509V3_add1_i2d(&exts, NID_subject_alt_name, san, 0, X509V3_ADD_DEFAULT) != 1 ||
	    X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
	    X509_REQ_set_subject_name(req, name) != 1 || X509_REQ_set_pubkey(req, pub) != 1 ||
	    X509_REQ_add_extensions(req, exts) != 1) {
		rc = x509_ossl_error("CSR");
		goto out;
	}
	if (X509_REQ_sign(req, evp, x509_sign_md(pub)) <= 0) {
		rc = x509_ossl_error("X509_REQ_sign");
		goto out;
	}
	if ((rc = req_to_pem(req, csr_pem)) != CUBEID_OK)
		goto out;
	free(c.pending_key_uri);
	c.pending_key_uri = key_uri;
	key_uri = NULL;
	if ((rc = ca_conf_write(state_dir, &c)) != CUBEID_OK) {
		free(*csr_pem);
		*csr_pem = NULL;
	}
out:
	if (rc != CUBEID_OK && key != NULL)
		cubeid_key_delete(key);
	cubeid_key_free(key);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(evp);
	X509_REQ_free(req);
	X509_NAME_free(name);
	GENERAL_NAMES_free(san);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	ca_conf_clear(&c);
	free(uri);
	free(cn);
	free(key_uri);
	return rc;
}

/* Find which of the conf's keys cert is for. */
static int
find_install_key(cubeid_token *tok, const struct ca_conf *c, X509 *cert, cubeid_key **out)
{
	const char *uris[2] = {c->pending_key_uri, c->key_uri};
	size_t i;

	*out = NULL;
	for (i = 0; i < 2; i++) {
		cubeid_key *k = NULL;

		if (uris[i] == NULL || cubeid_key_find_uri(tok, uris[i], &k) != CUBEID_OK)
			continue;
		if (ca_key_matches(k, cert) == CUBEID_OK) {
			*out = k;
			return CUBEID_OK;
		}
		cubeid_key_free(k);
	}
	cubeid_error("the certificate is not for this node's CA key");
	return CUBEID_ERR_CA;
}

/* The certificate must be a CA for the trust domain's own ID. */
static int
check_ca_cert(X509 *cert, const char *td)
{
	cubeid_spiffe_id *id = NULL;
	const char *reason = NULL;
	uint32_t flags;
	int rc;

	X509_check_purpose(cert, -1, 0);
	flags = X509_get_extension_flags(cert);
	if ((flags & EXFLAG_INVALID) != 0 || (flags & EXFLAG_CA) == 0 ||
	    (X509_get_key_usage(cert) & KU_KEY_CERT_SIGN) == 0) {
		cubeid_error("the certificate is not a CA certificate with keyCertSign");
		return CUBEID_ERR_CA;
	}
	if ((rc = cubeid_x509_spiffe_id(cert, &id, &reason)) != CUBEID_OK) {
		cubeid_error("the CA certificate's URI SAN: %s", reason);
		return CUBEID_ERR_CA;
	}
	if (!cubeid_spiffe_id_is_trust_domain_id(id) || !cubeid_spiffe_id_member_of(id, td)) {
		cubeid_error("the CA certificate's ID %s is not spiffe://%s",
		             cubeid_spiffe_id_string(id), td);
		rc = CUBEID_ERR_CA;
	}
	cubeid_spiffe_id_free(id);
	return rc;
}

int
cubeid_ca_install(cubeid_token *tok, const char *state_dir, const char *cert_pem, size_t cert_len,
                  const cubeid_x509_bundle *roots, cubeid_ca **out)
{
	struct ca_conf c = {0};
	STACK_OF(X509) *chain = NULL, *inter = NULL;
	cubeid_x509_bundle *bundle = NULL;
	cubeid_key *key = NULL;
	cubeid_ca *ca = NULL;
	char *path = NULL;
	const char *reason = NULL;
	X509 *cert = NULL;
	bool trust_file;
	int i, rc;

	if (out != NULL)
		*out = NULL;
	if (tok == NULL || cert_pem == NULL)
		return CUBEID_ERR_INVALID_ARG;
	state_dir = cubeid_state_dir(state_dir);
	if ((rc = ca_conf_read(state_dir, &c)) != CUBEID_OK) {
		if (rc == CUBEID_ERR_NOT_FOUND)
			cubeid_error("%s has no CA state: run 'cubeid ca csr' first", state_dir);
		goto out;
	}
	if (roots != NULL && strcmp(cubeid_x509_bundle_trust_domain(roots), c.td) != 0) {
		rc = CUBEID_ERR_CA;
		goto out;
	}
	if ((rc = cubeid_x509_chain_parse((const uint8_t *)cert_pem, cert_len,
	                                  CUBEID_X509_CHAIN_MAX, CUBEID_X509_CHAIN_CERTS,
	                                  &chain)) != CUBEID_OK)
		goto out;
	cert = sk_X509_shift(chain);
	if ((rc = check_ca_cert(cert, c.td)) != CUBEID_OK)
		goto out;
	if ((rc = find_install_key(tok, &c, cert, &key)) != CUBEID_OK)
		goto out;
	/* the trust anchors: given, else the state's bundle, else the
	 * self-signed certificates that came with the file */
	if ((rc = cubeid_x509_bundle_new(c.td, &bundle)) != CUBEID_OK)
		goto out;
	if (roots != NULL) {
		for (i = 0; i < (int)cubeid_x509_bundle_count(roots); i++)
			if ((rc = cubeid_x509_bundle_add(
			             bundle, cubeid_x509_bundle_at(roots, (size_t)i))) != CUBEID_OK)
				goto out;
	} else {
		cubeid_x509_bundle *state_b = NULL;

		if ((rc = path_join(state_dir, CUBEID_CA_BUNDLE_FILE, &path)) != CUBEID_OK)
			goto out;
		rc = cubeid_x509_bundle_read_file(c.td, path, &state_b);
		if (rc == CUBEID_OK) {
			cubeid_x509_bundle_free(bundle);
			bundle = state_b;
		} else if (rc != CUBEID_ERR_NOT_FOUND) {
			goto out;
		}
		rc = CUBEID_OK;
	}
	if ((inter = sk_X509_new_null()) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	trust_file = cubeid_x509_bundle_count(bundle) == 0;
	while (sk_X509_num(chain) > 0) {
		X509 *x = sk_X509_shift(chain);

		if (X509_check_issued(x, x) == X509_V_OK) {
			/* a root that came with the file is trusted only when no
			 * other anchor is known (first enrolment) */
			rc = trust_file ? cubeid_x509_bundle_add(bundle, x) : CUBEID_OK;
			X509_free(x);
			if (rc != CUBEID_OK)
				goto out;
			if (trust_file)
				cubeid_notice(
				        "trusting the root CA that came with the certificate");
		} else if (sk_X509_push(inter, x) <= 0) {
			X509_free(x);
			rc = CUBEID_ERR_NOMEM;
			goto out;
		}
	}
	if (cubeid_x509_bundle_count(bundle) == 0) {
		cubeid_error("no root to check the certificate against: pass the root bundle");
		rc = CUBEID_ERR_CA;
		goto out;
	}
	if ((rc = ca_verify_chain(cert, inter, bundle, 0, &reason)) != CUBEID_OK) {
		cubeid_error("the certificate does not chain to the root: %s", reason);
		goto out;
	}
	rc = ca_assemble(c.td, key, cert, inter, bundle, false, &ca);
	key = NULL;
	cert = NULL;
	inter = NULL;
	bundle = NULL;
	if (rc != CUBEID_OK)
		goto out;
	if ((rc = cubeid_ca_save(ca, state_dir)) != CUBEID_OK)
		goto out;
	cubeid_notice("installed intermediate CA for trust domain %s in %s", ca->td, state_dir);
	if (out != NULL) {
		*out = ca;
		ca = NULL;
	}
out:
	cubeid_ca_free(ca);
	cubeid_key_free(key);
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(inter, X509_free);
	cubeid_x509_bundle_free(bundle);
	ca_conf_clear(&c);
	free(path);
	return rc;
}
