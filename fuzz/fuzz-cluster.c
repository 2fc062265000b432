/*
 * libFuzzer target: what a cluster store hands us (docs/cluster.md).  The
 first byte picks the parser (its value mod 3), the rest is its input:
 *   0  a key publication: cubeid_pub_parse(), then cubeid_pub_verify()
 *      against an empty X.509 bundle (must never succeed)
 *   1  a Kubernetes ConfigMapList: cubeid_k8s_parse_configmap_list(),
 *      then each document it yields as a publication
 *   2  a wrapped cluster PicoD key document: cubeid_wrapped_parse()
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cubeid/cluster.h>
#include <cubeid/key-wrap.h>
#include <cubeid/log.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cubeid_x509_bundle *roots;

static void
publication(const char *doc, size_t len)
{
	cubeid_publication *p = NULL;
	struct cubeid_pub_key k;
	const char *why = NULL;
	size_t i;

	if (cubeid_pub_parse(doc, len, &p, &why) == CUBEID_OK) {
		/* what parsed is consistent */
		if (cubeid_publication_iat(p) >= cubeid_publication_exp(p) ||
		    !cubeid_node_name_valid(cubeid_publication_node(p)) ||
		    cubeid_publication_signer(p) == NULL)
			__builtin_trap();
		for (i = 0; cubeid_publication_key_at(p, i, &k) == CUBEID_OK; i++)
			if (k.pub == NULL || cubeid_pub_use_name(k.use) == NULL)
				__builtin_trap();
		cubeid_publication_free(p);
		p = NULL;
	} else if (why == NULL) {
		__builtin_trap(); /* every refusal says why */
	}
	/* no root: nothing may verify */
	if (cubeid_pub_verify(doc, len, roots, 1800000000, CUBEID_PUB_LEEWAY, &p, &why) ==
	    CUBEID_OK)
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cubeid_store_doc *docs = NULL;
	char *rv = NULL, *buf;
	size_t i, n = 0;

	if (roots == NULL) {
		cubeid_log_set_level(CUBEID_LOG_ERROR);
		if (cubeid_x509_bundle_new("example.org", &roots) != CUBEID_OK)
			abort();
	}
	if (size < 1)
		return 0;
	/* a NUL-terminated copy, as the stores give */
	if ((buf = malloc(size)) == NULL)
		return 0;
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	if (data[0] % 3 == 0) {
		publication(buf, size - 1);
	} else if (data[0] % 3 == 2) {
		struct cubeid_wrapped_info info;

		if (cubeid_wrapped_parse(buf, size - 1, &info) == CUBEID_OK) {
			if (info.pub == NULL || info.kid == NULL || info.wrapping_kid == NULL)
				__builtin_trap();
			cubeid_wrapped_info_clear(&info);
		}
	} else if (cubeid_k8s_parse_configmap_list(buf, size - 1, &docs, &n, &rv) == CUBEID_OK) {
		for (i = 0; i < n; i++) {
			if (!cubeid_node_name_valid(docs[i].node) ||
			    strlen(docs[i].data) > docs[i].len)
				__builtin_trap();
			publication(docs[i].data, docs[i].len);
		}
		cubeid_store_docs_free(docs, n);
		free(rv);
	}
	free(buf);
	return 0;
}
