/*
 * The Router side of PicoD tokens: the cubeid.picod.v1.PicoD calls on the
 * agent's socket (picod/picod.proto), over the Workload API client's
 * transport (cubeid_wl_call()).  See <cubeid/picod.h>.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <cubeid/picod.h>

#include "picod/picod.pb-c.h"
#include "spiffe/workloadapi-internal.h"

static char *
xstrdup(const char *s)
{
	return strdup(s != NULL ? s : "");
}

void
cubeid_picod_token_free(struct cubeid_picod_token *t)
{
	if (t == NULL)
		return;
	if (t->token != NULL) {
		OPENSSL_cleanse(t->token, strlen(t->token));
		free(t->token);
	}
	free(t->kid);
	free(t->aud);
	free(t->jti);
	free(t->spiffe_id);
	free(t);
}

int
cubeid_picod_fetch_token(const struct cubeid_wl_opts *o, const struct cubeid_picod_token_req *r,
                         struct cubeid_picod_token **out, struct cubeid_wl_status *st)
{
	Cubeid__Picod__V1__MintTokenRequest req = CUBEID__PICOD__V1__MINT_TOKEN_REQUEST__INIT;
	Cubeid__Picod__V1__MintTokenResponse *m = NULL;
	struct cubeid_picod_token *t = NULL;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if (r == NULL || r->session_id == NULL || r->sandbox == NULL || r->ttl < 0)
		return CUBEID_ERR_INVALID_ARG;
	req.session_id = (char *)r->session_id;
	req.sandbox = (char *)r->sandbox;
	req.namespace_ = (char *)(r->ns != NULL ? r->ns : "");
	req.user_sub = (char *)(r->user_sub != NULL ? r->user_sub : "");
	req.user_email = (char *)(r->user_email != NULL ? r->user_email : "");
	req.ttl_seconds = r->ttl;
	req.spiffe_id = (char *)(r->spiffe_id != NULL ? r->spiffe_id : "");
	if ((rc = wl_unary_call(o, CUBEID_PICOD_MINT_PATH, &req.base,
	                        &cubeid__picod__v1__mint_token_response__descriptor,
	                        (ProtobufCMessage **)&m, st)) < 0)
		return rc;
	rc = CUBEID_ERR_PROTOCOL;
	if (m->token == NULL || m->token[0] == '\0')
		goto out;
	rc = CUBEID_ERR_NOMEM;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		goto out;
	t->token = xstrdup(m->token);
	t->kid = xstrdup(m->kid);
	t->aud = xstrdup(m->audience);
	t->jti = xstrdup(m->jti);
	t->spiffe_id = xstrdup(m->spiffe_id);
	t->iat = m->issued_at;
	t->exp = m->expires_at;
	t->cached = m->cached;
	if (!t->token || !t->kid || !t->aud || !t->jti || !t->spiffe_id)
		goto out;
	*out = t;
	t = NULL;
	rc = 0;
out:
	if (m->token != NULL)
		OPENSSL_cleanse(m->token, strlen(m->token));
	cubeid__picod__v1__mint_token_response__free_unpacked(m, NULL);
	cubeid_picod_token_free(t);
	return rc;
}

void
cubeid_picod_pubkey_free(struct cubeid_picod_pubkey *k)
{
	if (k == NULL)
		return;
	free(k->kid);
	free(k->alg);
	free(k->pem);
	free(k->jwks);
	free(k);
}

int
cubeid_picod_fetch_public_key(const struct cubeid_wl_opts *o, struct cubeid_picod_pubkey **out,
                              struct cubeid_wl_status *st)
{
	Cubeid__Picod__V1__PublicKeyRequest req = CUBEID__PICOD__V1__PUBLIC_KEY_REQUEST__INIT;
	Cubeid__Picod__V1__PublicKeyResponse *m = NULL;
	struct cubeid_picod_pubkey *k = NULL;
	int rc;

	if (out == NULL)
		return CUBEID_ERR_INVALID_ARG;
	*out = NULL;
	if ((rc = wl_unary_call(o, CUBEID_PICOD_PUBKEY_PATH, &req.base,
	                        &cubeid__picod__v1__public_key_response__descriptor,
	                        (ProtobufCMessage **)&m, st)) < 0)
		return rc;
	rc = CUBEID_ERR_PROTOCOL;
	if (m->pem == NULL || strncmp(m->pem, "-----BEGIN PUBLIC KEY-----", 26) != 0)
		goto out;
	rc = CUBEID_ERR_NOMEM;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		goto out;
	k->kid = xstrdup(m->kid);
	k->alg = xstrdup(m->alg);
	k->pem = xstrdup(m->pem);
	k->jwks = xstrdup(m->jwks);
	if (!k->kid || !k->alg || !k->pem || !k->jwks)
		goto out;
	*out = k;
	k = NULL;
	rc = 0;
out:
	cubeid__picod__v1__public_key_response__free_unpacked(m, NULL);
	cubeid_picod_pubkey_free(k);
	return rc;
}

int
cubeid_picod_rotate_key(const struct cubeid_wl_opts *o, const char *key_type, int64_t prepublish,
                        char **kid, int64_t *active_from, struct cubeid_wl_status *st)
{
	Cubeid__Picod__V1__RotateKeyRequest req = CUBEID__PICOD__V1__ROTATE_KEY_REQUEST__INIT;
	Cubeid__Picod__V1__RotateKeyResponse *m = NULL;
	int rc;

	if (kid != NULL)
		*kid = NULL;
	if (active_from != NULL)
		*active_from = 0;
	req.key_type = (char *)(key_type != NULL ? key_type : "");
	req.prepublish_seconds = prepublish;
	if ((rc = wl_unary_call(o, CUBEID_PICOD_ROTATE_PATH, &req.base,
	                        &cubeid__picod__v1__rotate_key_response__descriptor,
	                        (ProtobufCMessage **)&m, st)) < 0)
		return rc;
	rc = 0;
	if (kid != NULL && (*kid = xstrdup(m->kid)) == NULL)
		rc = CUBEID_ERR_NOMEM;
	if (active_from != NULL)
		*active_from = m->active_from;
	cubeid__picod__v1__rotate_key_response__free_unpacked(m, NULL);
	return rc;
}
