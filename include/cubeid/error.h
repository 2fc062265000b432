/*
 * cubeid error codes.
 *
 * One flat list of negative codes with 0 for success, in the manner of
 * OpenSSH's ssherr.h.  Every function that can fail returns one of these;
 * errors from PKCS#11 (CKR_*) and OpenSSL are translated at the boundary
 * where they occur, and their detail is logged there.
 *
 * cubeid_strerror() has a message for every code; tests/test-error.c checks
 * that, so add the message in common/error.c when you add a code here.
 */
#ifndef CUBEID_ERROR_H
#define CUBEID_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define CUBEID_OK                   0
#define CUBEID_ERR_INTERNAL         -1  /* a bug: an invariant did not hold */
#define CUBEID_ERR_NOMEM            -2  /* memory allocation failed */
#define CUBEID_ERR_INVALID_ARG      -3  /* a caller passed a bad argument */
#define CUBEID_ERR_BUFFER_TOO_SMALL -4  /* output buffer too small; size returned */
#define CUBEID_ERR_IO               -5  /* a system call failed; errno tells more */
#define CUBEID_ERR_NOT_FOUND        -6  /* the named thing does not exist */
#define CUBEID_ERR_EXISTS           -7  /* the named thing already exists */
#define CUBEID_ERR_UNSUPPORTED      -8  /* not supported by this build or peer */
#define CUBEID_ERR_PARSE            -9  /* malformed input */
#define CUBEID_ERR_TOO_LARGE        -10 /* input exceeds a hard limit */
#define CUBEID_ERR_PERMISSION       -11 /* not permitted (file mode, policy) */
#define CUBEID_ERR_CRYPTO           -12 /* an OpenSSL operation failed */
#define CUBEID_ERR_CONFIG           -13 /* bad configuration */
#define CUBEID_ERR_AMBIGUOUS        -14 /* several objects match; name one */
#define CUBEID_ERR_UNAVAILABLE      -15 /* the service (agent, token) cannot serve now */
#define CUBEID_ERR_TIMEOUT          -16 /* the deadline passed */
#define CUBEID_ERR_RPC              -17 /* the peer failed the call (other gRPC status) */
#define CUBEID_ERR_PROTOCOL         -18 /* the peer broke the wire protocol */
#define CUBEID_ERR_PEER_CHANGED     -19 /* peer process exited or its pid was reused */

/* PKCS#11 token layer */
#define CUBEID_ERR_P11_MODULE        -20 /* the module could not be loaded */
#define CUBEID_ERR_P11_MODULE_DENIED -21 /* module path outside the allow-list */
#define CUBEID_ERR_P11_URI           -22 /* bad PKCS#11 URI */
#define CUBEID_ERR_P11_NO_TOKEN      -23 /* no token matches the URI */
#define CUBEID_ERR_P11_AMBIGUOUS     -24 /* several tokens match the URI */
#define CUBEID_ERR_P11_PIN_MISSING   -25 /* login needed but no PIN source given */
#define CUBEID_ERR_P11_PIN_INCORRECT -26 /* the token rejected the PIN */
#define CUBEID_ERR_P11_PIN_LOCKED    -27 /* the token has locked the PIN */
#define CUBEID_ERR_P11_NOT_LOGGED_IN -28 /* operation needs a logged-in session */
#define CUBEID_ERR_P11_SESSION       -29 /* session closed or invalid */
#define CUBEID_ERR_P11_DEVICE        -30 /* token removed or device failure */
#define CUBEID_ERR_P11_MECHANISM     -31 /* the token lacks the mechanism */
#define CUBEID_ERR_P11_KEY           -32 /* key unusable for this operation */
#define CUBEID_ERR_P11_SENSITIVE     -33 /* attribute is sensitive: not exported */
#define CUBEID_ERR_P11_TEMPLATE      -34 /* the token rejected an attribute */
#define CUBEID_ERR_P11_TOKEN_FULL    -35 /* no room left on the token */
#define CUBEID_ERR_P11_READ_ONLY     -36 /* token or session is read-only */
#define CUBEID_ERR_P11_BUSY          -37 /* token busy, try again */
#define CUBEID_ERR_P11_GENERAL       -38 /* any other PKCS#11 failure */

/* identity model */
#define CUBEID_ERR_SPIFFE_ID     -50 /* not a valid SPIFFE ID */
#define CUBEID_ERR_JWT_MALFORMED -51 /* not a well-formed JWS compact token */
#define CUBEID_ERR_JWT_ALG       -52 /* alg not in the allow-list */
#define CUBEID_ERR_JWT_SIGNATURE -53 /* signature does not verify */
#define CUBEID_ERR_JWT_KID       -54 /* kid missing or unknown */
#define CUBEID_ERR_JWT_EXPIRED   -55 /* exp is in the past */
#define CUBEID_ERR_JWT_NOT_YET   -56 /* nbf/iat is in the future */
#define CUBEID_ERR_JWT_AUDIENCE  -57 /* aud missing or not accepted */
#define CUBEID_ERR_JWT_CLAIM     -58 /* a required claim is missing or bad */
#define CUBEID_ERR_JWKS          -59 /* malformed JWKS or unusable key */
#define CUBEID_ERR_X509          -60 /* malformed certificate */
#define CUBEID_ERR_X509_VERIFY   -61 /* chain does not verify */
#define CUBEID_ERR_X509_SVID     -62 /* certificate breaks X.509-SVID rules */
#define CUBEID_ERR_CA            -63 /* CA missing or not usable */
#define CUBEID_ERR_X509_EXPIRED  -64 /* certificate outside its validity period */

/*
 * Blocks reserved per area so that work in parallel cannot pick the same
 * number; add a code inside its area's block:
 *   -70..-77  TLS loader and file delivery
 *   -78..-79  PicoD tokens and the auth-mode switch
 *   -80..-89  HTTP, OIDC and Keycloak
 *   -90..-99  cluster trust (key publication)
 */
#define CUBEID_ERR_TLS              -70 /* TLS set-up or handshake failed */
#define CUBEID_ERR_TLS_PEER_ID      -71 /* peer's SPIFFE ID is not on the allow-list */
#define CUBEID_ERR_TLS_NO_PEER_CERT -72 /* peer presented no certificate */
#define CUBEID_ERR_KEY_MISMATCH     -73 /* certificate and private key do not match */
#define CUBEID_ERR_TLS_UNKNOWN_CA   -74 /* peer chain does not lead to a trusted CA */
#define CUBEID_ERR_TLS_PEER_EXPIRED -75 /* peer certificate expired or not yet valid */

#define CUBEID_ERR_AUTH_MODE     -78 /* the two sides use different auth modes */
#define CUBEID_ERR_PICOD_SESSION -79 /* session_id is not this sandbox's session */

#define CUBEID_ERR_HTTP            -80 /* HTTP transfer failed (connect, TLS, timeout) */
#define CUBEID_ERR_HTTP_STATUS     -81 /* the server answered with an error status */
#define CUBEID_ERR_OAUTH           -82 /* the token endpoint returned an OAuth error */
#define CUBEID_ERR_UNAUTHENTICATED -83 /* bearer token missing or invalid (HTTP 401) */
#define CUBEID_ERR_FORBIDDEN       -84 /* authenticated but not allowed (HTTP 403) */
#define CUBEID_ERR_JWT_ISSUER      -85 /* iss is not the configured issuer */

#define CUBEID_ERR_STORE       -90 /* the key publication store is unreachable */
#define CUBEID_ERR_PUBLICATION -91 /* a published key does not chain to a node */

#define CUBEID_ERR_MIN -99 /* lowest code reserved (see the blocks above) */

/* A static, human-readable message for code; never NULL. */
const char *cubeid_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
