/*
 * CA renewal on reload (docs/operations.md, "CA renewal"): after `cubeid ca
 * csr`, `ca sign` and `ca install`, the state directory holds a new node
 * intermediate.  On SIGHUP the agent loads it on a worker, checks it, and
 * swaps it in on the loop thread; the old CA stays on any failure, with the
 * reason logged.  The checks, as ghostunnel's certloader does for a reload:
 *   - the certificate is valid now (not expired, not before its time);
 *   - its key is on the token and matches it, and it chains to the bundle
 *     in the state directory (cubeid_ca_load());
 *   - it is of the trust domain the agent runs with;
 *   - it chains to the roots the agent runs with: a new intermediate under
 *     the same root, never a new root slipped in through bundle.pem.
 * Then every X.509-SVID is minted again from it (svid_cache_x509_reissue()).
 * A CA swapped out is kept until exit: a worker may still sign with it.
 */
#include "config.h"

#include "agent/daemon.h"

#include <cubeid/log.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

/* RFC 3339 (UTC) for a certificate time; "?" if it has none. */
void
agent_asn1_time_rfc3339(const ASN1_TIME *t, char *buf, size_t size)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
	    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "?");
}

/* The first certificate of state_dir/ca.pem (caller frees), or NULL. */
static X509 *
read_ca_cert(const char *state_dir)
{
	char path[PATH_MAX];
	X509 *x;
	FILE *f;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", state_dir, CUBEID_CA_CERT_FILE) >=
	            sizeof(path) ||
	    (f = fopen(path, "re")) == NULL)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

/*
 * The CA certificate in state_dir/ca.pem must be valid now: an expired
 * (or not yet valid) one is named with its dates, which cubeid_ca_load()
 * would report only as a chain that does not verify.  A missing file is
 * left to it.
 */
int
agent_ca_validity_check(const char *state_dir)
{
	char when[32];
	X509 *x;
	int rc = CUBEID_OK;

	if ((x = read_ca_cert(state_dir)) == NULL)
		return CUBEID_OK;
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
		agent_asn1_time_rfc3339(X509_get0_notAfter(x), when, sizeof(when));
		cubeid_error(
		        "the CA certificate in %s/%s expired at %s: renew it (ca csr, ca sign, "
		        "ca install, then SIGHUP; see operations.md)",
		        state_dir, CUBEID_CA_CERT_FILE, when);
		rc = CUBEID_ERR_CA;
	} else if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
		agent_asn1_time_rfc3339(X509_get0_notBefore(x), when, sizeof(when));
		cubeid_error("the CA certificate in %s/%s is not valid before %s (is the clock "
		             "right?)",
		             state_dir, CUBEID_CA_CERT_FILE, when);
		rc = CUBEID_ERR_CA;
	}
	X509_free(x);
	return rc;
}

/* Does ca's certificate chain to one of the roots in b, now?  *why on no. */
static bool
chains_to(const cubeid_ca *ca, const cubeid_x509_bundle *b, const char **why)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	bool ok = false;
	size_t i;

	*why = "out of memory";
	if (st == NULL || ctx == NULL)
		goto out;
	for (i = 0; i < cubeid_x509_bundle_count(b); i++)
		if (X509_STORE_add_cert(st, cubeid_x509_bundle_at(b, i)) != 1)
			goto out;
	if (X509_STORE_CTX_init(ctx, st, cubeid_ca_cert(ca), cubeid_ca_intermediates(ca)) != 1)
		goto out;
	if (X509_verify_cert(ctx) == 1)
		ok = true;
	else
		*why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	return ok;
}

int
ca_renew_load(struct agent *a, cubeid_ca **out)
{
	const char *dir = a->cfg->state_dir, *why;
	cubeid_ca *ca = NULL;
	X509 *disk;
	char when[32];
	int rc;

	*out = NULL;
	if ((disk = read_ca_cert(dir)) == NULL)
		return CUBEID_OK; /* cubeid_ca_load() at the next start says why */
	if (X509_cmp(disk, cubeid_ca_cert(a->ca)) == 0) {
		X509_free(disk);
		return CUBEID_OK; /* the running one */
	}
	X509_free(disk);
	cubeid_notice("reload: a new CA certificate in %s/%s; checking it", dir,
	              CUBEID_CA_CERT_FILE);
	if ((rc = agent_ca_validity_check(dir)) != CUBEID_OK)
		goto refuse;
	if ((rc = cubeid_ca_load(a->tok, dir, &ca)) != CUBEID_OK) {
		cubeid_error("reload: cannot load the new CA: %s", cubeid_strerror(rc));
		goto refuse;
	}
	if (strcmp(cubeid_ca_trust_domain(ca), a->td) != 0) {
		cubeid_error("reload: the new CA is for trust domain %s, not %s",
		             cubeid_ca_trust_domain(ca), a->td);
		rc = CUBEID_ERR_CA;
		goto refuse;
	}
	if (!chains_to(ca, cubeid_ca_bundle(a->ca), &why)) {
		cubeid_error("reload: the new CA does not chain to the roots the agent runs with: "
		             "%s",
		             why);
		rc = CUBEID_ERR_CA;
		goto refuse;
	}
	*out = ca;
	return CUBEID_OK;
refuse:
	cubeid_ca_free(ca);
	agent_asn1_time_rfc3339(X509_get0_notAfter(cubeid_ca_cert(a->ca)), when, sizeof(when));
	cubeid_error("reload: keeping the running CA (valid until %s)", when);
	return rc;
}

void
ca_renew_apply(struct agent *a, cubeid_ca *ca)
{
	cubeid_ca **r;
	char when[32];

	if ((r = realloc(a->ca_retired, (a->n_ca_retired + 1) * sizeof(*r))) == NULL) {
		cubeid_error("reload: %s; keeping the running CA",
		             cubeid_strerror(CUBEID_ERR_NOMEM));
		cubeid_ca_free(ca);
		return;
	}
	a->ca_retired = r;
	a->ca_retired[a->n_ca_retired++] = a->ca;
	a->ca = ca; /* a->td stays: the old CA's copy of the same name lives on */
	agent_asn1_time_rfc3339(X509_get0_notAfter(cubeid_ca_cert(ca)), when, sizeof(when));
	cubeid_notice("reload: the agent now issues from the new CA (valid until %s)", when);
	a->ops->bundles_refresh(a);
	svid_cache_x509_reissue(a->cache);
}

void
ca_renew_free(struct agent *a)
{
	size_t i;

	for (i = 0; i < a->n_ca_retired; i++)
		cubeid_ca_free(a->ca_retired[i]);
	free(a->ca_retired);
	a->ca_retired = NULL;
	a->n_ca_retired = 0;
}
