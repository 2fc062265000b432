/*
 * X.509-SVID verification (X509-SVID.md sections 4 and 5): the leaf's
 * SPIFFE ID and key usage rules, the signing certificates' CA rules, then
 * path validation to the trust domain's bundle with OpenSSL.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "spiffe/x509-internal.h"

#define REASON(r, s) ((r) != NULL ? (void)(*(r) = (s)) : (void)0)

/* Count the URI SANs of cert; *first gets the first.  < 0 on a malformed
 * or duplicated subjectAltName extension. */
static int
uri_sans(X509 *cert, GENERAL_NAMES **gens_out, const ASN1_IA5STRING **first)
{
	GENERAL_NAMES *gens;
	int crit = 0, i, n = 0;

	*gens_out = NULL;
	*first = NULL;
	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
	if (gens == NULL)
		return crit == -1 ? 0 : -1; /* -1: absent; -2: several; else bad */
	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);

		if (gn->type != GEN_URI)
			continue;
		if (n++ == 0)
			*first = gn->d.uniformResourceIdentifier;
	}
	*gens_out = gens;
	return n;
}

int
cubeid_x509_spiffe_id(X509 *cert, cubeid_spiffe_id **id, const char **reason)
{
	GENERAL_NAMES *gens = NULL;
	const ASN1_IA5STRING *uri = NULL;
	int n, rc = CUBEID_ERR_X509_SVID;

	if (id != NULL)
		*id = NULL;
	REASON(reason, "ok");
	if (cert == NULL || id == NULL)
		return CUBEID_ERR_INVALID_ARG;
	n = uri_sans(cert, &gens, &uri);
	if (n < 0) {
		REASON(reason, "malformed or repeated subjectAltName extension");
		rc = CUBEID_ERR_X509;
	} else if (n == 0) {
		REASON(reason, "no URI SAN");
	} else if (n > 1) {
		REASON(reason, "more than one URI SAN");
	} else if (cubeid_spiffe_id_parse((const char *)ASN1_STRING_get0_data(uri),
	                                  (size_t)ASN1_STRING_length(uri), id, NULL) != CUBEID_OK) {
		REASON(reason, "the URI SAN is not a SPIFFE ID");
	} else {
		rc = CUBEID_OK;
	}
	GENERAL_NAMES_free(gens);
	ERR_clear_error();
	return rc;
}

static int
check_leaf(X509 *leaf, const cubeid_x509_bundle *bundle, cubeid_spiffe_id **id, const char **reason)
{
	uint32_t flags, ku;
	int rc;

	X509_check_purpose(leaf, -1, 0);
	flags = X509_get_extension_flags(leaf);
	if ((flags & EXFLAG_INVALID) != 0) {
		REASON(reason, "leaf has malformed extensions");
		return CUBEID_ERR_X509;
	}
	if ((rc = cubeid_x509_spiffe_id(leaf, id, reason)) != CUBEID_OK)
		return rc;
	rc = CUBEID_ERR_X509_SVID;
	if ((flags & EXFLAG_CA) != 0 || X509_check_ca(leaf) != 0) {
		REASON(reason, "leaf is a CA certificate");
		goto fail;
	}
	ku = X509_get_key_usage(leaf);
	if ((flags & EXFLAG_KUSAGE) == 0) {
		REASON(reason, "leaf has no key usage extension");
		goto fail;
	}
	if ((ku & KU_KEY_CERT_SIGN) != 0) {
		REASON(reason, "leaf has keyCertSign");
		goto fail;
	}
	if ((ku & KU_CRL_SIGN) != 0) {
		REASON(reason, "leaf has cRLSign");
		goto fail;
	}
	if ((ku & KU_DIGITAL_SIGNATURE) == 0) {
		REASON(reason, "leaf lacks digitalSignature");
		goto fail;
	}
	if (!cubeid_spiffe_id_member_of(*id, cubeid_x509_bundle_trust_domain(bundle))) {
		REASON(reason, "leaf's SPIFFE ID is not in the bundle's trust domain");
		goto fail;
	}
	if (cubeid_spiffe_id_is_trust_domain_id(*id)) {
		REASON(reason, "leaf's SPIFFE ID has no path (X509-SVID.md 2)");
		goto fail;
	}
	return CUBEID_OK;
fail:
	cubeid_spiffe_id_free(*id);
	*id = NULL;
	return rc;
}

static int
check_signer(X509 *x, const char **reason)
{
	GENERAL_NAMES *gens = NULL;
	const ASN1_IA5STRING *first = NULL;
	uint32_t flags;
	int i, n, rc = CUBEID_OK;

	X509_check_purpose(x, -1, 0);
	flags = X509_get_extension_flags(x);
	if ((flags & EXFLAG_INVALID) != 0) {
		REASON(reason, "intermediate has malformed extensions");
		return CUBEID_ERR_X509;
	}
	if ((flags & EXFLAG_CA) == 0) {
		REASON(reason, "intermediate is not a CA certificate");
		return CUBEID_ERR_X509_SVID;
	}
	if ((flags & EXFLAG_KUSAGE) == 0 || (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) == 0) {
		REASON(reason, "intermediate lacks keyCertSign");
		return CUBEID_ERR_X509_SVID;
	}
	n = uri_sans(x, &gens, &first);
	if (n < 0) {
		REASON(reason, "intermediate has a malformed subjectAltName");
		return CUBEID_ERR_X509;
	}
	for (i = 0; rc == CUBEID_OK && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
		const ASN1_IA5STRING *u = gn->d.uniformResourceIdentifier;
		cubeid_spiffe_id *sid = NULL;

		if (gn->type != GEN_URI)
			continue;
		if (cubeid_spiffe_id_parse((const char *)ASN1_STRING_get0_data(u),
		                           (size_t)ASN1_STRING_length(u), &sid,
		                           NULL) != CUBEID_OK) {
			REASON(reason, "intermediate has a URI SAN that is not a SPIFFE ID");
			rc = CUBEID_ERR_X509_SVID;
		} else if (!cubeid_spiffe_id_is_trust_domain_id(sid)) {
			REASON(reason, "intermediate's SPIFFE ID has a path");
			rc = CUBEID_ERR_X509_SVID;
		}
		cubeid_spiffe_id_free(sid);
	}
	GENERAL_NAMES_free(gens);
	return rc;
}

int
cubeid_x509_svid_verify(STACK_OF(X509) * chain, const cubeid_x509_bundle *bundle, int64_t now,
                        cubeid_spiffe_id **id, const char **reason)
{
	STACK_OF(X509) *inter = NULL;
	cubeid_spiffe_id *sid = NULL;
	X509 *leaf;
	time_t t;
	int i, n, rc;

	if (id != NULL)
		*id = NULL;
	REASON(reason, "invalid argument");
	if (chain == NULL || bundle == NULL)
		return CUBEID_ERR_INVALID_ARG;
	n = sk_X509_num(chain);
	if (n <= 0) {
		REASON(reason, "empty certificate chain");
		return CUBEID_ERR_X509;
	}
	if (n > CUBEID_X509_CHAIN_CERTS) {
		REASON(reason, "certificate chain too long");
		return CUBEID_ERR_TOO_LARGE;
	}
	leaf = sk_X509_value(chain, 0);
	if ((rc = check_leaf(leaf, bundle, &sid, reason)) != CUBEID_OK)
		goto out;
	for (i = 1; i < n; i++)
		if ((rc = check_signer(sk_X509_value(chain, i), reason)) != CUBEID_OK)
			goto out;
	/* the leaf's own validity first, for a precise reason */
	t = (time_t)x509_now(now);
	if (X509_cmp_time(X509_get0_notBefore(leaf), &t) >= 0) {
		REASON(reason, "leaf is not yet valid");
		rc = CUBEID_ERR_X509_EXPIRED;
		goto out;
	}
	if (X509_cmp_time(X509_get0_notAfter(leaf), &t) <= 0) {
		REASON(reason, "leaf has expired");
		rc = CUBEID_ERR_X509_EXPIRED;
		goto out;
	}
	if (cubeid_x509_bundle_count(bundle) == 0) {
		REASON(reason, "the bundle has no X.509 authorities");
		rc = CUBEID_ERR_X509_VERIFY;
		goto out;
	}
	if ((inter = sk_X509_new_null()) == NULL) {
		rc = CUBEID_ERR_NOMEM;
		goto out;
	}
	for (i = 1; i < n; i++)
		if (sk_X509_push(inter, sk_X509_value(chain, i)) <= 0) {
			rc = CUBEID_ERR_NOMEM;
			goto out;
		}
	if ((rc = ca_verify_chain(leaf, inter, bundle, now, reason)) != CUBEID_OK)
		goto out;
	REASON(reason, "ok");
	if (id != NULL) {
		*id = sid;
		sid = NULL;
	}
out:
	sk_X509_free(inter); /* borrowed certificates */
	cubeid_spiffe_id_free(sid);
	ERR_clear_error();
	return rc;
}

int
cubeid_x509_svid_verify_buf(const uint8_t *buf, size_t len, const cubeid_x509_bundle *bundle,
                            int64_t now, cubeid_spiffe_id **id, const char **reason)
{
	STACK_OF(X509) *chain = NULL;
	int rc;

	if (id != NULL)
		*id = NULL;
	REASON(reason, "malformed certificate chain");
	if (buf == NULL || bundle == NULL)
		return CUBEID_ERR_INVALID_ARG;
	rc = cubeid_x509_chain_parse(buf, len, CUBEID_X509_CHAIN_MAX, CUBEID_X509_CHAIN_CERTS,
	                             &chain);
	if (rc != CUBEID_OK)
		return rc;
	rc = cubeid_x509_svid_verify(chain, bundle, now, id, reason);
	sk_X509_pop_free(chain, X509_free);
	return rc;
}
