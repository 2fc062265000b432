/*
 * libFuzzer target: the PicoD verifier (<cubeid/picod.h>).  The input is
 * tried three ways: as an Authorization header value; as a claims object,
 * signed with the verifier's own key so that the claim checks (exp, iat,
 * nbf, aud, session_id, types) are reached, which no forged signature
 * could do; as an HTTP request head; and as a PICOD_AUTH_PUBLIC_KEY PEM.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <cubeid/picod-auth.h>
#include <cubeid/picod.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cubeid_picod_verifier *v;
static EVP_PKEY *key;

static void
setup(void)
{
	struct cubeid_picod_verifier_opts o = {
	        .ns = "team-a", .sandbox = "sb-a", .session_id = "s-1", .leeway = -1};
	BIO *b = BIO_new(BIO_s_mem());
	char *pem;
	long n;

	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (key == NULL || b == NULL || PEM_write_bio_PUBKEY(b, key) != 1 ||
	    cubeid_picod_verifier_new(&o, &v) != CUBEID_OK)
		abort();
	n = BIO_get_mem_data(b, &pem);
	if (cubeid_picod_verifier_set_pem(v, pem, (size_t)n) != CUBEID_OK)
		abort();
	BIO_free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cubeid_picod_verified *r = NULL;
	cubeid_picod_verifier *pv = NULL;
	struct cubeid_picod_verifier_opts o = {.sandbox = "x", .leeway = -1};
	char *s, *tok = NULL;
	json_t *claims;
	int rc;

	if (v == NULL)
		setup();
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	/* 1: a header */
	rc = cubeid_picod_verify_header(v, s, 1800000000, &r);
	if ((rc == CUBEID_OK) != (r != NULL))
		__builtin_trap();
	cubeid_picod_verified_free(r);
	r = NULL;
	/* 2: claims, signed with the right key */
	claims = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	if (json_is_object(claims) &&
	    cubeid_jws_encode(CUBEID_SIG_ECDSA_SHA256, "k", "JWT", claims, cubeid_jws_sign_evp, key,
	                      &tok) == CUBEID_OK) {
		rc = cubeid_picod_verify_token(v, tok, strlen(tok), 1800000000, &r);
		if (rc == CUBEID_ERR_JWT_SIGNATURE || rc == CUBEID_ERR_JWT_ALG ||
		    (rc == CUBEID_OK) != (r != NULL))
			__builtin_trap(); /* our own signature must verify */
		cubeid_picod_verified_free(r);
		free(tok);
	}
	json_decref(claims);
	/* 3: an HTTP head (the auth switch's request reader) */
	if (cubeid_picod_http_header(s, size, "Authorization", &tok) == CUBEID_OK) {
		if (tok == NULL)
			__builtin_trap();
		free(tok);
	}
	/* 4: a PEM key */
	if (cubeid_picod_verifier_new(&o, &pv) == CUBEID_OK) {
		(void)cubeid_picod_verifier_set_pem(pv, s, size);
		cubeid_picod_verifier_free(pv);
	}
	free(s);
	ERR_clear_error();
	return 0;
}
