/*
 * `cubeid helper`: a drop-in for spiffe-helper (cli/tool-helper.c).
 *
 * helper-config.c reads spiffe-helper's own configuration files, which are
 * a small subset of HCL (version 1, as hashicorp/hcl decodes them):
 *
 *   key = "string" | 123 | 0644 | true | [ ... ] | { ... }
 *   key { ... }                    (a block: the same as key = { ... })
 *   # comment, // comment, / * comment * /
 *
 * with spiffe-helper v0.11.0's keys.  An unknown key, a value of the wrong
 * type or a syntax error is an error "FILE:LINE: why".
 */
#ifndef CUBEID_AGENT_HELPER_H
#define CUBEID_AGENT_HELPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HELPER_CONFIG_MAX    (1u << 20) /* bytes of a config file */
#define HELPER_JWT_SVIDS_MAX 64
#define HELPER_HEALTH_PORT   8081 /* spiffe-helper's default bind_port */

struct helper_jwt {
	char *audience; /* jwt_audience */
	char **extra;   /* jwt_extra_audiences */
	size_t n_extra;
	char *file; /* jwt_svid_file_name */
};

struct helper_config {
	char *agent_address; /* NULL: $SPIFFE_ENDPOINT_SOCKET, ... (see helper_config_finish) */
	char *cert_dir;      /* NULL: the current directory */
	char *svid_file_name, *svid_key_file_name, *svid_bundle_file_name;
	struct helper_jwt *jwt;
	size_t n_jwt;
	char *jwt_bundle_file_name;
	char *cmd, *cmd_args;
	char *renew_signal;
	char *pid_file_name;
	int daemon_mode; /* -1 unset (default true), 0, 1 */
	long cert_file_mode, key_file_mode, jwt_bundle_file_mode, jwt_svid_file_mode;
	bool add_intermediates_to_bundle, include_federated_domains, omit_expired;
	char *hint;
	bool health_listener_enabled;
	long health_bind_port;
	char *health_liveness_path, *health_readiness_path;
};

/* Parse buf[0..len) (name is used in messages).  On error *err is
 * "NAME:LINE: why" (caller frees) and the result CUBEID_ERR_CONFIG (or
 * _TOO_LARGE, _NOMEM). */
int helper_config_parse(const char *buf, size_t len, const char *name, struct helper_config **out,
                        char **err);
/* Apply spiffe-helper's defaults and checks (ValidateConfig): the agent
 * address from the environment, file modes 0644/0600/0600/0600, the
 * all-or-none X.509 names, pid_file_name needs renew_signal and daemon
 * mode, at least one output; with health_checks.listener_enabled,
 * bind_port 0..65535 (0: 8081) and liveness_path and readiness_path
 * ("/live", "/ready" when empty) plain, distinct paths.  *err as above. */
int helper_config_finish(struct helper_config *c, char **err);
void helper_config_free(struct helper_config *c);

/* ---- the files, from Workload API messages (helper-files.c) ---- */
struct cubeid_wl_x509;
struct cubeid_wl_bundle;
/* svid.pem, svid_key.pem and svid_bundle.pem of the message's SVID (the
 * first, or the one with c->hint) as PEM; new buffers, the caller frees
 * (and wipes the key). */
int helper_x509_files(const struct helper_config *c, const struct cubeid_wl_x509 *x, uint8_t **svid,
                      size_t *svid_len, uint8_t **key, size_t *key_len, uint8_t **bundle,
                      size_t *bundle_len);
/* spiffe-helper's JWT bundle file: {"td": "base64(JWKS)", ...}. */
int helper_jwt_bundle_json(const struct cubeid_wl_bundle *v, size_t n, uint8_t **out, size_t *len);
/* The exp claim of a JWT, unverified (0 if it cannot be read). */
int64_t helper_jwt_exp(const char *tok);

/* ---- the health listener (helper-health.c) ---- */
enum helper_write_status { HELPER_WS_UNWRITTEN, HELPER_WS_FAILED, HELPER_WS_WRITTEN };
/* Indices of a status array: the X.509 files, the JWT bundle file, then
 * jwt_svids[i] at HELPER_HS_JWT0 + i. */
enum { HELPER_HS_X509, HELPER_HS_JWT_BUNDLE, HELPER_HS_JWT0 };
/* Fills st[0 .. HELPER_HS_JWT0 + n_jwt) (called on the listener's thread). */
typedef void (*helper_health_fn)(void *arg, enum helper_write_status *st);
struct helper_health;

/* spiffe-helper's answer to liveness_path (readiness false) or
 * readiness_path: *http_status 200 or 503 and its JSON body (new; the
 * caller frees). */
int helper_health_reply(const struct helper_config *c, const enum helper_write_status *st,
                        bool readiness, int *http_status, char **body, size_t *len);
/* Go's path.Join(dir, name), as spiffe-helper names the JWT files there. */
char *helper_path_join(const char *dir, const char *name);
/* Serve c's liveness_path and readiness_path on c->health_bind_port, on
 * address (an IPv4 or IPv6 literal) or, when NULL, on every address as
 * spiffe-helper does, in a thread of its own.  CUBEID_ERR_IO if the port
 * cannot be had. */
int helper_health_start(const struct helper_config *c, const char *address, helper_health_fn snap,
                        void *arg, struct helper_health **out);
void helper_health_stop(struct helper_health *h);

/* ---- the HCL subset, as a tree (helper-hcl.c) ---- */
enum hv_type { HV_STR, HV_NUM, HV_BOOL, HV_LIST, HV_OBJ };

struct hkv;
struct hv {
	enum hv_type type;
	unsigned line;
	char *s; /* HV_STR, HV_NUM (its text) */
	bool b;
	struct hv *items; /* HV_LIST */
	struct hkv *kv;   /* HV_OBJ */
	size_t n;
};
struct hkv {
	char *key;
	unsigned line;
	struct hv v;
};

/* Parse buf[0..len) as the items of one object into *root (free it with
 * hcl_free() whatever the result).  On error *err is "NAME:LINE: why". */
int hcl_parse(const char *buf, size_t len, const char *name, struct hv *root, char **err);
void hcl_free(struct hv *v);
/* Set *err to "NAME:LINE: message" (unless already set); returns
 * CUBEID_ERR_CONFIG, or CUBEID_ERR_NOMEM. */
int hcl_error(char **err, const char *name, unsigned line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

#endif
