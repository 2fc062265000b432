/* Messages for the codes in include/cubeid/error.h. */
#include "config.h"

#include <cubeid/error.h>

#include <stddef.h>

struct errmsg {
	int code;
	const char *msg;
};

static const struct errmsg errmsgs[] = {
        {CUBEID_OK, "success"},
        {CUBEID_ERR_INTERNAL, "internal error"},
        {CUBEID_ERR_NOMEM, "out of memory"},
        {CUBEID_ERR_INVALID_ARG, "invalid argument"},
        {CUBEID_ERR_BUFFER_TOO_SMALL, "output buffer too small"},
        {CUBEID_ERR_IO, "input/output error"},
        {CUBEID_ERR_NOT_FOUND, "not found"},
        {CUBEID_ERR_EXISTS, "already exists"},
        {CUBEID_ERR_UNSUPPORTED, "not supported"},
        {CUBEID_ERR_PARSE, "malformed input"},
        {CUBEID_ERR_TOO_LARGE, "input too large"},
        {CUBEID_ERR_PERMISSION, "permission denied"},
        {CUBEID_ERR_CRYPTO, "cryptographic operation failed"},
        {CUBEID_ERR_CONFIG, "invalid configuration"},
        {CUBEID_ERR_AMBIGUOUS, "more than one object matches: name one (by id)"},
        {CUBEID_ERR_UNAVAILABLE, "service unavailable"},
        {CUBEID_ERR_TIMEOUT, "timed out"},
        {CUBEID_ERR_RPC, "the remote call failed"},
        {CUBEID_ERR_PROTOCOL, "protocol error"},
        {CUBEID_ERR_PEER_CHANGED,
         "the peer process exited or its pid was reused during attestation"},
        {CUBEID_ERR_P11_MODULE, "PKCS#11 module could not be loaded"},
        {CUBEID_ERR_P11_MODULE_DENIED, "PKCS#11 module is outside the allowed directories"},
        {CUBEID_ERR_P11_URI, "invalid PKCS#11 URI"},
        {CUBEID_ERR_P11_NO_TOKEN, "no PKCS#11 token matches the URI"},
        {CUBEID_ERR_P11_AMBIGUOUS, "more than one PKCS#11 token matches the URI"},
        {CUBEID_ERR_P11_PIN_MISSING, "token login needs a PIN: give pin-source=FILE in the URI, "
                                     "--pin-file, CUBEID_PIN_FILE or CUBEID_PIN"},
        {CUBEID_ERR_P11_PIN_INCORRECT, "the token rejected the PIN"},
        {CUBEID_ERR_P11_PIN_LOCKED, "the token PIN is locked"},
        {CUBEID_ERR_P11_NOT_LOGGED_IN, "the token session is not logged in"},
        {CUBEID_ERR_P11_SESSION, "the token session is closed or invalid"},
        {CUBEID_ERR_P11_DEVICE, "the token was removed or failed"},
        {CUBEID_ERR_P11_MECHANISM, "the token does not support this mechanism"},
        {CUBEID_ERR_P11_KEY, "the key cannot be used for this operation"},
        {CUBEID_ERR_P11_SENSITIVE, "the key is sensitive and cannot be exported"},
        {CUBEID_ERR_P11_TEMPLATE, "the token rejected a key attribute"},
        {CUBEID_ERR_P11_TOKEN_FULL, "the token has no room left"},
        {CUBEID_ERR_P11_READ_ONLY, "the token or session is read-only"},
        {CUBEID_ERR_P11_BUSY, "the token is busy"},
        {CUBEID_ERR_P11_GENERAL, "PKCS#11 operation failed"},
        {CUBEID_ERR_SPIFFE_ID, "invalid SPIFFE ID"},
        {CUBEID_ERR_JWT_MALFORMED, "malformed JWT"},
        {CUBEID_ERR_JWT_ALG, "JWT algorithm not allowed"},
        {CUBEID_ERR_JWT_SIGNATURE, "JWT signature does not verify"},
        {CUBEID_ERR_JWT_KID, "JWT key id missing or unknown"},
        {CUBEID_ERR_JWT_EXPIRED, "JWT has expired"},
        {CUBEID_ERR_JWT_NOT_YET, "JWT is not yet valid"},
        {CUBEID_ERR_JWT_AUDIENCE, "JWT audience missing or not accepted"},
        {CUBEID_ERR_JWT_CLAIM, "JWT claim missing or invalid"},
        {CUBEID_ERR_JWKS, "malformed JWKS or unusable key"},
        {CUBEID_ERR_X509, "malformed certificate"},
        {CUBEID_ERR_X509_VERIFY, "certificate chain does not verify"},
        {CUBEID_ERR_X509_SVID, "certificate is not a valid X.509-SVID"},
        {CUBEID_ERR_CA, "certificate authority missing or unusable"},
        {CUBEID_ERR_X509_EXPIRED, "certificate is outside its validity period"},
        {CUBEID_ERR_TLS, "TLS set-up or handshake failed"},
        {CUBEID_ERR_TLS_PEER_ID, "the peer's SPIFFE ID is not allowed"},
        {CUBEID_ERR_TLS_NO_PEER_CERT, "the peer presented no certificate"},
        {CUBEID_ERR_KEY_MISMATCH, "the certificate does not match the private key"},
        {CUBEID_ERR_TLS_UNKNOWN_CA, "the peer's certificate is not issued by a trusted CA"},
        {CUBEID_ERR_TLS_PEER_EXPIRED, "the peer's certificate has expired or is not yet valid"},
        {CUBEID_ERR_AUTH_MODE, "the client and the server use different auth modes"},
        {CUBEID_ERR_PICOD_SESSION, "the token's session_id is not this sandbox's session"},
        {CUBEID_ERR_HTTP, "HTTP request failed"},
        {CUBEID_ERR_HTTP_STATUS, "the HTTP server answered with an error status"},
        {CUBEID_ERR_OAUTH, "the token endpoint refused the request"},
        {CUBEID_ERR_UNAUTHENTICATED, "bearer token missing or invalid"},
        {CUBEID_ERR_FORBIDDEN, "not allowed: a required role or ownership is missing"},
        {CUBEID_ERR_JWT_ISSUER, "JWT issuer is not the expected one"},
        {CUBEID_ERR_STORE, "the key publication store is unreachable"},
        {CUBEID_ERR_PUBLICATION, "a published key does not chain to a node of the trust domain"},
};

const char *
cubeid_strerror(int code)
{
	size_t i;

	for (i = 0; i < sizeof(errmsgs) / sizeof(errmsgs[0]); i++)
		if (errmsgs[i].code == code)
			return errmsgs[i].msg;
	return "unknown error code";
}
