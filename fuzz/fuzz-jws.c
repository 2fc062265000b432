/* libFuzzer target: JWS decoding, verification and JWT-SVID validation. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cubeid/jwt.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cubeid_jwt_bundle *bundle;
static EVP_PKEY *keys[4];

/* One key per class, under kids "ec256", "ec384", "ec521", "rsa". */
static void
setup(void)
{
	static const char *const kids[] = {"ec256", "ec384", "ec521", "rsa"};
	size_t i;

	keys[0] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	keys[1] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	keys[2] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
	keys[3] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (cubeid_jwt_bundle_new("example.org", &bundle) != CUBEID_OK)
		abort();
	for (i = 0; i < 4; i++)
		if (keys[i] == NULL || cubeid_jwt_bundle_add(bundle, kids[i], keys[i]) != CUBEID_OK)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *tok = (const char *)data;
	cubeid_jws *jws = NULL;
	cubeid_spiffe_id *id = NULL;
	json_t *claims = NULL;
	size_t i;

	if (bundle == NULL)
		setup();
	if (cubeid_jws_decode(tok, size, &jws) == CUBEID_OK) {
		size_t n;
		if (cubeid_jws_claims(jws) == NULL || cubeid_jws_header(jws) == NULL ||
		    cubeid_jws_signing_input(jws, &n) == NULL || n >= size)
			__builtin_trap();
		for (i = 0; i < 4; i++)
			/* a fuzzer cannot forge a signature */
			if (cubeid_jws_verify(jws, keys[i]) == CUBEID_OK)
				__builtin_trap();
		cubeid_jws_free(jws);
	}
	if (cubeid_jwt_svid_validate(tok, size, bundle, "aud", 0, 0, &id, &claims) == CUBEID_OK)
		__builtin_trap();
	if (id != NULL || claims != NULL)
		__builtin_trap();
	return 0;
}
