/*
 * The CA state directory: ca.conf, ca.pem, bundle.pem, written atomically;
 * loading a CA from it, and the single-node default (cubeid_ca_ensure).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cubeid/jwt-keys.h>
#include <cubeid/log.h>

#include "spiffe/x509-internal.h"

#define CA_CONF_MAX     (16 * 1024)
#define CA_CONF_VERSION "1"

/* ---- ca.conf --------------------------------------------------------- */

void
ca_conf_clear(struct ca_conf *c)
{
	free(c->td);
	free(c->role);
	free(c->key_uri);
	free(c->pending_key_uri);
	memset(c, 0, sizeof(*c));
}

static int
conf_set(char **slot, const char *val)
{
	if (*slot != NULL)
		return CUBEID_ERR_CONFIG; /* a key given twice */
	if ((*slot = strdup(val)) == NULL)
		return CUBEID_ERR_NOMEM;
	return CUBEID_OK;
}

int
ca_conf_read(const char *dir, struct ca_conf *c)
{
	char *path = NULL, *buf = NULL, *line, *save = NULL;
	bool version = false;
	int rc;

	memset(c, 0, sizeof(*c));
	if ((rc = path_join(dir, CUBEID_CA_CONF, &path)) != CUBEID_OK)
		return rc;
	if ((rc = cubeid_read_file(path, CA_CONF_MAX, &buf, NULL)) != CUBEID_OK)
		goto out;
	for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *eq;

		if (line[0] == '#' || line[0] == '\0')
			continue;
		if ((eq = strchr(line, '=')) == NULL) {
			rc = CUBEID_ERR_CONFIG;
			goto out;
		}
		*eq++ = '\0';
		if (strcmp(line, "version") == 0) {
			if (strcmp(eq, CA_CONF_VERSION) != 0) {
				rc = CUBEID_ERR_CONFIG;
				goto out;
			}
			version = true;
			continue;
		} else if (strcmp(line, "trust_domain") == 0) {
			rc = conf_set(&c->td, eq);
		} else if (strcmp(line, "role") == 0) {
			if (strcmp(eq, "root") != 0 && strcmp(eq, "intermediate") != 0)
				rc = CUBEID_ERR_CONFIG;
			else
				rc = conf_set(&c->role, eq);
		} else if (strcmp(line, "key_uri") == 0) {
			rc = conf_set(&c->key_uri, eq);
		} else if (strcmp(line, "pending_key_uri") == 0) {
			rc = conf_set(&c->pending_key_uri, eq);
		} else {
			rc = CUBEID_ERR_CONFIG;
		}
		if (rc != CUBEID_OK)
			goto out;
	}
	if (!version || c->td == NULL ||
	    cubeid_trust_domain_validate(c->td, strlen(c->td), NULL) != CUBEID_OK ||
	    (c->role != NULL) != (c->key_uri != NULL))
		rc = CUBEID_ERR_CONFIG;
out:
	if (rc == CUBEID_ERR_CONFIG)
		cubeid_error("%s/%s is malformed", dir, CUBEID_CA_CONF);
	if (rc != CUBEID_OK)
		ca_conf_clear(c);
	free(path);
	free(buf);
	return rc;
}

static bool
conf_value_ok(const char *v)
{
	return v == NULL || (strchr(v, '\n') == NULL && strchr(v, '\r') == NULL);
}

int
ca_conf_write(const char *dir, const struct ca_conf *c)
{
	char *path = NULL, *text = NULL;
	int rc, n;

	if (c->td == NULL || !conf_value_ok(c->td) || !conf_value_ok(c->role) ||
	    !conf_value_ok(c->key_uri) || !conf_value_ok(c->pending_key_uri))
		return CUBEID_ERR_INVALID_ARG;
	n = asprintf(&text,
	             "# cubeid CA state (written by cubeid; keys are PKCS#11 URIs)\n"
	             "version=" CA_CONF_VERSION "\ntrust_domain=%s\n%s%s%s%s%s%s%s%s%s",
	             c->td, c->role ? "role=" : "", c->role ? c->role : "", c->role ? "\n" : "",
	             c->key_uri ? "key_uri=" : "", c->key_uri ? c->key_uri : "",
	             c->key_uri ? "\n" : "", c->pending_key_uri ? "pending_key_uri=" : "",
	             c->pending_key_uri ? c->pending_key_uri : "", c->pending_key_uri ? "\n" : "");
	if (n < 0)
		return CUBEID_ERR_NOMEM;
	if ((rc = path_join(dir, CUBEID_CA_CONF, &path)) == CUBEID_OK)
		rc = cubeid_atomic_write(path, text, (size_t)n, 0600);
	free(path);
	free(text);
	return rc;
}

/* ---- save and load --------------------------------------------------- */

static int
write_certs(const char *dir, const char *name, STACK_OF(X509) * certs)
{
	char *path = NULL, *pem = NULL;
	size_t len = 0;
	int rc;

	if ((rc = cubeid_x509_chain_to_pem(certs, &pem, &len)) != CUBEID_OK)
		return rc;
	if ((rc = path_join(dir, name, &path)) == CUBEID_OK)
		rc = cubeid_atomic_write(path, pem, len, 0644);
	free(path);
	free(pem);
	return rc;
}

int
cubeid_ca_save(const cubeid_ca *ca, const char *state_dir)
{
	struct ca_conf old = {0}, c = {0};
	STACK_OF(X509) *chain = NULL;
	char *uri = NULL;
	int i, rc;

	if (ca == NULL)
		return CUBEID_ERR_INVALID_ARG;
	state_dir = cubeid_state_dir(state_dir);
	if ((rc = cubeid_state_dir_prepare(state_dir)) != CUBEID_OK)
		return rc;
	rc = ca_conf_read(state_dir, &old);
	if (rc != CUBEID_OK && rc != CUBEID_ERR_NOT_FOUND)
		return rc;
	if ((rc = cubeid_key_uri(ca->key, &uri)) != CUBEID_OK)
		goto out;
	if ((chain = sk_X509_new_null()) == NULL || sk_X509_push(chain, ca->cert) <= 0) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < sk_X509_num(ca->intermediates); i++)
		if (sk_X509_push(chain, sk_X509_value(ca->intermediates, i)) <= 0) {
			rc = CUBEID_ERR_NOMEM;
			goto out;
		}
	/* certificates first: ca.conf is the commit point */
	if ((rc = write_certs(state_dir, CUBEID_CA_CERT_FILE, chain)) != CUBEID_OK)
		goto out;
	if ((rc = write_certs(state_dir, CUBEID_CA_BUNDLE_FILE,
	                      cubeid_x509_bundle_certs(ca->bundle))) != CUBEID_OK)
		goto out;
	c.td = ca->td;
	c.role = ca->is_root ? "root" : "intermediate";
	c.key_uri = uri;
	/* keep an enrolment in progress for another key */
	if (old.pending_key_uri != NULL && strcmp(old.pending_key_uri, uri) != 0)
		c.pending_key_uri = old.pending_key_uri;
	rc = ca_conf_write(state_dir, &c);
out:
	sk_X509_free(chain); /* the certificates are borrowed */
	ca_conf_clear(&old);
	free(uri);
	return rc;
}

int
cubeid_ca_load(cubeid_token *tok, const char *state_dir, cubeid_ca **out)
{
	struct ca_conf c = {0};
	cubeid_key *key = NULL;
	STACK_OF(X509) *chain = NULL;
	cubeid_x509_bundle *bundle = NULL;
	char *path = NULL;
	X509 *cert;
	const char *reason = NULL;
	bool is_root;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (tok == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	state_dir = cubeid_state_dir(state_dir);
	if ((rc = ca_conf_read(state_dir, &c)) != CUBEID_OK)
		return rc;
	if (c.key_uri == NULL) {
		rc = CUBEID_ERR_NOT_FOUND; /* only an enrolment in progress */
		goto out;
	}
	if ((rc = cubeid_key_find_uri(tok, c.key_uri, &key)) != CUBEID_OK) {
		cubeid_error("CA key %s not found on the token: %s", c.key_uri,
		             cubeid_strerror(rc));
		rc = CUBEID_ERR_CA;
		goto out;
	}
	if ((rc = path_join(state_dir, CUBEID_CA_CERT_FILE, &path)) != CUBEID_OK)
		goto out;
	if ((rc = cubeid_x509_chain_read_file(path, CUBEID_X509_CHAIN_MAX, CUBEID_X509_CHAIN_CERTS,
	                                      &chain)) != CUBEID_OK) {
		cubeid_error("cannot read %s: %s", path, cubeid_strerror(rc));
		rc = CUBEID_ERR_CA;
		goto out;
	}
	free(path);
	if ((rc = path_join(state_dir, CUBEID_CA_BUNDLE_FILE, &path)) != CUBEID_OK)
		goto out;
	if ((rc = cubeid_x509_bundle_read_file(c.td, path, &bundle)) != CUBEID_OK) {
		cubeid_error("cannot read %s: %s", path, cubeid_strerror(rc));
		rc = CUBEID_ERR_CA;
		goto out;
	}
	cert = sk_X509_shift(chain);
	if ((rc = ca_key_matches(key, cert)) != CUBEID_OK) {
		X509_free(cert);
		goto out;
	}
	if ((rc = ca_verify_chain(cert, chain, bundle, 0, &reason)) != CUBEID_OK) {
		cubeid_error("CA certificate in %s does not verify: %s", state_dir, reason);
		X509_free(cert);
		goto out;
	}
	is_root = strcmp(c.role, "root") == 0 && X509_check_issued(cert, cert) == X509_V_OK;
	rc = ca_assemble(c.td, key, cert, chain, bundle, is_root, out);
	key = NULL;
	chain = NULL;
	bundle = NULL;
out:
	cubeid_key_free(key);
	sk_X509_pop_free(chain, X509_free);
	cubeid_x509_bundle_free(bundle);
	ca_conf_clear(&c);
	free(path);
	return rc;
}

/* The trust domain's first JWT-SVID signing key (<cubeid/jwt-keys.h>),
 * active at once, unless state_dir already has JWT keys. */
static int
ensure_jwt_keys(cubeid_token *tok, const char *state_dir, const char *td,
                const struct cubeid_ca_opts *opts)
{
	struct cubeid_jwt_keys_opts jo = {0};
	int rc;

	jo.now = opts != NULL ? opts->now : 0;
	rc = cubeid_jwt_keys_init(tok, state_dir, td, &jo, NULL);
	if (rc == CUBEID_ERR_EXISTS)
		return CUBEID_OK;
	if (rc != CUBEID_OK)
		cubeid_error("cannot create the JWT-SVID signing key: %s", cubeid_strerror(rc));
	return rc;
}

int
cubeid_ca_init(cubeid_token *tok, const char *state_dir, const char *td,
               const struct cubeid_ca_opts *opts, cubeid_ca **out)
{
	struct ca_conf c = {0};
	cubeid_ca *ca = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (tok == NULL || td == NULL)
		return CUBEID_ERR_INVALID_ARG;
	state_dir = cubeid_state_dir(state_dir);
	if ((rc = cubeid_state_dir_prepare(state_dir)) != CUBEID_OK)
		return rc;
	rc = ca_conf_read(state_dir, &c);
	if (rc == CUBEID_OK && c.key_uri != NULL)
		rc = CUBEID_ERR_EXISTS;
	else if (rc == CUBEID_OK && strcmp(c.td, td) != 0)
		rc = CUBEID_ERR_CA; /* an enrolment for another trust domain */
	else if (rc == CUBEID_ERR_NOT_FOUND || rc == CUBEID_OK)
		rc = CUBEID_OK;
	ca_conf_clear(&c);
	if (rc != CUBEID_OK)
		return rc;
	if ((rc = cubeid_ca_root_create(tok, td, opts, &ca)) != CUBEID_OK)
		return rc;
	if ((rc = cubeid_ca_save(ca, state_dir)) != CUBEID_OK) {
		cubeid_ca_free(ca);
		return rc;
	}
	cubeid_notice("created root CA for trust domain %s in %s", td, state_dir);
	if ((rc = ensure_jwt_keys(tok, state_dir, td, opts)) != CUBEID_OK) {
		cubeid_ca_free(ca);
		return rc;
	}
	if (out != NULL)
		*out = ca;
	else
		cubeid_ca_free(ca);
	return CUBEID_OK;
}

int
cubeid_ca_ensure(cubeid_token *tok, const char *state_dir, const char *td,
                 const struct cubeid_ca_opts *opts, cubeid_ca **out)
{
	cubeid_ca *ca = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (tok == NULL || td == NULL || out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	rc = cubeid_ca_load(tok, state_dir, &ca);
	if (rc == CUBEID_ERR_NOT_FOUND)
		return cubeid_ca_init(tok, state_dir, td, opts, out);
	if (rc != CUBEID_OK)
		return rc;
	if (strcmp(ca->td, td) != 0) {
		cubeid_error("the CA in %s is for trust domain %s, not %s",
		             cubeid_state_dir(state_dir), ca->td, td);
		cubeid_ca_free(ca);
		return CUBEID_ERR_CA;
	}
	/* a state from before JWT keys were kept gets its first one */
	if ((rc = ensure_jwt_keys(tok, state_dir, td, opts)) != CUBEID_OK) {
		cubeid_ca_free(ca);
		return rc;
	}
	*out = ca;
	return CUBEID_OK;
}
