/*
 * libFuzzer target: the certificate-chain parser that files and the
 * Workload API reach (PEM or concatenated DER), the X.509 bundle parser,
 * and X.509-SVID verification of whatever parses, against a bundle made of
 * the input's own CA certificates.  Must never crash, leak or hang.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cubeid/x509svid.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	STACK_OF(X509) *chain = NULL;
	cubeid_x509_bundle *b = NULL;
	cubeid_spiffe_id *id = NULL;
	const char *why = NULL;
	char *pem = NULL;
	size_t len = 0;
	int i;

	if (cubeid_x509_chain_parse(data, size, CUBEID_X509_CHAIN_MAX, CUBEID_X509_CHAIN_CERTS,
	                            &chain) != CUBEID_OK)
		return 0;
	(void)cubeid_x509_chain_to_pem(chain, &pem, &len);
	if (cubeid_x509_bundle_new("example.org", &b) == CUBEID_OK) {
		for (i = 1; i < sk_X509_num(chain); i++)
			(void)cubeid_x509_bundle_add(b, sk_X509_value(chain, i));
		(void)cubeid_x509_svid_verify(chain, b, 1700000000, &id, &why);
	}
	cubeid_spiffe_id_free(id);
	cubeid_x509_bundle_free(b);
	if (pem != NULL) {
		cubeid_x509_bundle *b2 = NULL;

		(void)cubeid_x509_bundle_parse("example.org", (const uint8_t *)pem, len, &b2);
		cubeid_x509_bundle_free(b2);
	}
	free(pem);
	sk_X509_pop_free(chain, X509_free);
	return 0;
}
