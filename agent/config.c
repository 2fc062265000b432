/*
 * The agent's config file: one YAML mapping of known keys (docs/config.md).
 * libyaml because YAML is what Kubernetes operators already write (the
 * DaemonSet's ConfigMap), it has comments, and its parser reports lines.
 *
 * Strict: an unknown key, a duplicate key or a value of the wrong type is
 * an error naming the file, the line and the key.
 */
#include "config.h"

#include "agent/agent.h"
#include "agent/http.h"
#include "agent/yaml-util.h"

#include <cubeid/log.h>
#include <cubeid/spiffe.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (1024 * 1024)

#define DEF_TRUST_DOMAIN CUBEID_TRUST_DOMAIN_DEFAULT
#define DEF_SOCKET_PATH  "/run/cubeid/agent.sock"
#define DEF_STATE_DIR    "/var/lib/cubeid"
/* under the configured sysconfdir (/etc with --sysconfdir=/etc) */
#define DEF_ENTRIES CUBEID_SYSCONFDIR "/cubeid/entries.yaml"

enum kind { K_STR, K_PATH, K_TD, K_DURATION, K_LOGLEVEL, K_SIZE, K_UINT, K_URL, K_HOSTPORT };

#define OFF(f) offsetof(struct agent_config, f)
struct key {
	const char *name;
	enum kind kind;
	size_t off;
	size_t max; /* K_SIZE / K_UINT upper bound */
};

static const struct key top_keys[] = {
        {"trust_domain", K_TD, OFF(trust_domain), 0},
        {"socket_path", K_PATH, OFF(socket_path), 0},
        {"state_dir", K_PATH, OFF(state_dir), 0},
        {"token", K_STR, OFF(token), 0},
        {"workload_token", K_STR, OFF(workload_token), 0},
        {"pin_file", K_PATH, OFF(pin_file), 0},
        {"module", K_PATH, OFF(module), 0},
        {"entries", K_PATH, OFF(entries), 0},
        {"x509_svid_ttl", K_DURATION, OFF(x509_svid_ttl), 0},
        {"jwt_svid_ttl", K_DURATION, OFF(jwt_svid_ttl), 0},
        {"log_level", K_LOGLEVEL, OFF(log_level), 0},
        {"http_address", K_HOSTPORT, OFF(http_address), 0},
        {"kubelet_pods_url", K_URL, OFF(kubelet_pods_url), 0},
        {"pod_info_file", K_PATH, OFF(pod_info_file), 0},
        {"kubelet_token_file", K_PATH, OFF(kubelet_token_file), 0},
        {"kubelet_ca_file", K_PATH, OFF(kubelet_ca_file), 0},
        {"attest_sha256_max", K_SIZE, OFF(attest_sha256_max), (size_t)4 << 30},
        {"picod_issuer", K_STR, OFF(picod_issuer), 0},
        {"picod_token_ttl", K_DURATION, OFF(picod_token_ttl), 0},
        {NULL, 0, 0, 0},
};
#define GOFF(f) (offsetof(struct agent_config, grpc) + offsetof(struct grpc_limits, f))
static const struct key grpc_keys[] = {
        {"max_message", K_SIZE, GOFF(max_message), 64u << 20},
        {"max_streams", K_UINT, GOFF(max_streams), 100000},
        {"max_connections", K_UINT, GOFF(max_connections), 1000000},
        {"max_pending_output", K_SIZE, GOFF(max_pending_output), (size_t)1 << 30},
        {"max_connections_per_uid", K_UINT, GOFF(max_connections_per_uid), 1000000},
        {"max_streams_per_uid", K_UINT, GOFF(max_streams_per_uid), 100000000},
        {"first_request_timeout", K_DURATION, GOFF(first_request_timeout), 0},
        {NULL, 0, 0, 0},
};
#define COFF(f) (offsetof(struct agent_config, cluster) + offsetof(struct cluster_config, f))
static const struct key cluster_keys[] = {
        {"store", K_STR, COFF(store), 0},
        {"dir", K_PATH, COFF(dir), 0},
        {"node", K_STR, COFF(node), 0},
        {"refresh", K_DURATION, COFF(refresh), 0},
        {"max_stale", K_DURATION, COFF(max_stale), 0},
        {"publication_ttl", K_DURATION, COFF(publication_ttl), 0},
        {"jwks_file", K_PATH, COFF(jwks_file), 0},
        {"picod_jwks_file", K_PATH, COFF(picod_jwks_file), 0},
        {"k8s_api_server", K_URL, COFF(k8s_api_server), 0},
        {"k8s_namespace", K_STR, COFF(k8s_namespace), 0},
        {"k8s_token_file", K_PATH, COFF(k8s_token_file), 0},
        {"k8s_ca_file", K_PATH, COFF(k8s_ca_file), 0},
        {NULL, 0, 0, 0},
};

#define STR_VALUE_MAX 4096

const char *
config_key_name(size_t i)
{
	static char buf[64];
	size_t nt = sizeof(top_keys) / sizeof(top_keys[0]) - 1;

	if (i < nt)
		return top_keys[i].name;
	i -= nt;
	if (i < sizeof(grpc_keys) / sizeof(grpc_keys[0]) - 1) {
		snprintf(buf, sizeof(buf), "grpc.%s", grpc_keys[i].name);
		return buf;
	}
	i -= sizeof(grpc_keys) / sizeof(grpc_keys[0]) - 1;
	if (i < sizeof(cluster_keys) / sizeof(cluster_keys[0]) - 1) {
		snprintf(buf, sizeof(buf), "cluster.%s", cluster_keys[i].name);
		return buf;
	}
	return NULL;
}

void
config_free(struct agent_config *c)
{
	if (c == NULL)
		return;
	free(c->trust_domain);
	free(c->socket_path);
	free(c->state_dir);
	if (c->token != NULL) /* may hold a pin-value attribute */
		explicit_bzero(c->token, strlen(c->token));
	free(c->token);
	if (c->workload_token != NULL)
		explicit_bzero(c->workload_token, strlen(c->workload_token));
	free(c->workload_token);
	free(c->pin_file);
	free(c->module);
	free(c->entries);
	free(c->http_address);
	free(c->kubelet_pods_url);
	free(c->pod_info_file);
	free(c->kubelet_token_file);
	free(c->kubelet_ca_file);
	free(c->picod_issuer);
	free(c->source);
	free(c->cluster.store);
	free(c->cluster.dir);
	free(c->cluster.node);
	free(c->cluster.jwks_file);
	free(c->cluster.picod_jwks_file);
	free(c->cluster.k8s_api_server);
	free(c->cluster.k8s_namespace);
	free(c->cluster.k8s_token_file);
	free(c->cluster.k8s_ca_file);
	free(c);
}

int
config_default(struct agent_config **out)
{
	struct agent_config *c;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return CUBEID_ERR_NOMEM;
	c->trust_domain = strdup(DEF_TRUST_DOMAIN);
	c->socket_path = strdup(DEF_SOCKET_PATH);
	c->state_dir = strdup(DEF_STATE_DIR);
	c->entries = strdup(DEF_ENTRIES);
	if (c->trust_domain == NULL || c->socket_path == NULL || c->state_dir == NULL ||
	    c->entries == NULL) {
		config_free(c);
		return CUBEID_ERR_NOMEM;
	}
	c->x509_svid_ttl = 3600;
	c->jwt_svid_ttl = 300;
	c->picod_token_ttl = 300;
	c->log_level = CUBEID_LOG_NOTICE;
	c->attest_sha256_max = 64u << 20;
	c->grpc.max_message = 4u << 20;
	c->grpc.max_streams = 100;
	c->grpc.max_connections = 4096;
	c->grpc.max_pending_output = 8u << 20;
	c->grpc.max_connections_per_uid = 512;
	c->grpc.max_streams_per_uid = 1024;
	c->grpc.first_request_timeout = 10;
	c->cluster.refresh = 30;
	*out = c;
	return CUBEID_OK;
}

static int
set_value(struct agent_config *c, const struct key *k, const yaml_node_t *v, const char *name,
          char **err)
{
	char *base = (char *)c + k->off;
	const char *s = yu_scalar(v);
	cubeid_spiffe_reason why;
	unsigned long ul;
	size_t sz;
	long secs;
	int lvl;

	if (s == NULL)
		return yu_err(err, name, v, "'%s' must be a single value (a scalar)", k->name);
	switch (k->kind) {
	case K_STR:
	case K_PATH:
	case K_TD:
	case K_URL:
	case K_HOSTPORT: {
		char **field = (char **)(void *)base, *dup;

		if (yu_null(v)) {
			if (k->kind == K_TD)
				return yu_err(err, name, v, "'%s' may not be empty", k->name);
			free(*field);
			*field = NULL;
			return CUBEID_OK;
		}
		if (v->data.scalar.length > STR_VALUE_MAX)
			return yu_err(err, name, v, "'%s' is longer than %d bytes", k->name,
			              STR_VALUE_MAX);
		if (k->kind == K_TD &&
		    cubeid_trust_domain_validate(s, strlen(s), &why) != CUBEID_OK)
			return yu_err(err, name, v, "'%s': '%s' is not a trust domain name: %s",
			              k->name, s, cubeid_spiffe_reason_str(why));
		if (k->kind == K_PATH && s[0] != '/')
			return yu_err(err, name, v, "'%s' must be an absolute path", k->name);
		if (k->kind == K_URL && strncmp(s, "http://", 7) != 0 &&
		    strncmp(s, "https://", 8) != 0)
			return yu_err(err, name, v, "'%s' must be an http:// or https:// URL",
			              k->name);
		if (k->kind == K_HOSTPORT) {
			struct sockaddr_storage ss;
			socklen_t sl;
			const char *hwhy;

			if (cubeid_addr_parse(s, &ss, &sl, &hwhy) != CUBEID_OK)
				return yu_err(err, name, v, "'%s': bad address '%s': %s", k->name,
				              s, hwhy);
		}
		if ((dup = strdup(s)) == NULL)
			return CUBEID_ERR_NOMEM;
		free(*field);
		*field = dup;
		return CUBEID_OK;
	}
	case K_DURATION:
		if (yu_duration(v, &secs) != CUBEID_OK)
			return yu_err(err, name, v,
			              "'%s': bad duration '%s' (digits and one unit s, m, h or d: "
			              "90s, 5m, 1h)",
			              k->name, s);
		*(long *)(void *)base = secs;
		return CUBEID_OK;
	case K_LOGLEVEL:
		if ((lvl = cubeid_log_level_from_name(s)) < 0)
			return yu_err(
			        err, name, v,
			        "'%s': unknown level '%s' (error, warning, notice, info, debug)",
			        k->name, s);
		*(int *)(void *)base = lvl;
		return CUBEID_OK;
	case K_SIZE:
		if (yu_size(v, k->max, &sz) != CUBEID_OK)
			return yu_err(err, name, v,
			              "'%s': bad size '%s' (bytes, or with KiB, MiB, GiB; at most "
			              "%zu)",
			              k->name, s, k->max);
		*(size_t *)(void *)base = sz;
		return CUBEID_OK;
	case K_UINT:
		if (yu_ulong(v, k->max, &ul) != CUBEID_OK || ul == 0)
			return yu_err(err, name, v, "'%s': bad number '%s' (1 to %zu)", k->name, s,
			              k->max);
		*(unsigned *)(void *)base = (unsigned)ul;
		return CUBEID_OK;
	}
	return CUBEID_ERR_INTERNAL;
}

static int
apply_mapping(yaml_document_t *doc, yaml_node_t *map, const struct key *keys, const char *where,
              struct agent_config *c, const char *name, char **err)
{
	yaml_node_pair_t *p, *q;
	int r;

	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(doc, p->value);
		const char *ks = yu_scalar(kn);
		const struct key *k;

		if (ks == NULL)
			return yu_err(err, name, kn, "%skeys must be plain names", where);
		for (q = map->data.mapping.pairs.start; q < p; q++) {
			const char *qs = yu_scalar(yaml_document_get_node(doc, q->key));
			if (qs != NULL && strcmp(qs, ks) == 0)
				return yu_err(err, name, kn, "duplicate key '%s%s'", where, ks);
		}
		if (keys == top_keys && strcmp(ks, "grpc") == 0) {
			if (vn == NULL || vn->type != YAML_MAPPING_NODE)
				return yu_err(err, name, vn,
				              "'grpc' must be a mapping (max_message, max_streams, "
				              "max_connections, max_pending_output, "
				              "max_connections_per_uid, max_streams_per_uid, "
				              "first_request_timeout)");
			if ((r = apply_mapping(doc, vn, grpc_keys, "grpc.", c, name, err)) != 0)
				return r;
			continue;
		}
		if (keys == top_keys && strcmp(ks, "cluster") == 0) {
			if (vn == NULL || vn->type != YAML_MAPPING_NODE)
				return yu_err(
				        err, name, vn,
				        "'cluster' must be a mapping (store, dir, node, ...)");
			if ((r = apply_mapping(doc, vn, cluster_keys, "cluster.", c, name, err)) !=
			    0)
				return r;
			continue;
		}
		for (k = keys; k->name != NULL; k++)
			if (strcmp(k->name, ks) == 0)
				break;
		if (k->name == NULL)
			return yu_err(err, name, kn, "unknown key '%s%s'", where, ks);
		if ((r = set_value(c, k, vn, name, err)) != CUBEID_OK)
			return r;
	}
	return CUBEID_OK;
}

int
config_parse(const char *buf, size_t len, const char *name, struct agent_config **out, char **err)
{
	struct agent_config *c = NULL;
	yaml_document_t doc;
	yaml_node_t *root;
	bool loaded = false;
	int r;

	*out = NULL;
	if (err != NULL)
		*err = NULL;
	if (buf == NULL || name == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if (len > CONFIG_FILE_MAX)
		return yu_err(err, name, NULL, "larger than the limit of %d bytes",
		              CONFIG_FILE_MAX);
	if ((r = config_default(&c)) != CUBEID_OK)
		goto out;
	if ((r = yu_load(buf, len, name, &doc, err)) != CUBEID_OK)
		goto out;
	loaded = true;
	root = yaml_document_get_root_node(&doc);
	if (root != NULL && !yu_null(root)) {
		if (root->type != YAML_MAPPING_NODE) {
			r = yu_err(err, name, root, "the config must be a mapping of keys");
			goto out;
		}
		if ((r = apply_mapping(&doc, root, top_keys, "", c, name, err)) != CUBEID_OK)
			goto out;
	}
	/* PicoD tokens live at most as long as AgentCube's own (5 minutes) */
	if (c->picod_token_ttl < 1 || c->picod_token_ttl > 300) {
		r = yu_err(err, name, NULL, "'picod_token_ttl' must be 1s to 5m");
		goto out;
	}
	if ((c->source = strdup(name)) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	*out = c;
	c = NULL;
out:
	if (loaded)
		yaml_document_delete(&doc);
	config_free(c);
	return r;
}

int
config_load(const char *path, struct agent_config **out, char **err)
{
	char *buf = NULL;
	size_t len = 0;
	int r;

	*out = NULL;
	if (err != NULL)
		*err = NULL;
	if (path == NULL)
		return CUBEID_ERR_INVALID_ARG;
	if ((r = yu_read_file(path, CONFIG_FILE_MAX, &buf, &len, err)) != CUBEID_OK)
		return r;
	r = config_parse(buf, len, path, out, err);
	free(buf);
	return r;
}

int
config_secret_file_check(const char *path, char **err)
{
	struct stat st;
	int r = CUBEID_OK;

	*err = NULL;
	if (stat(path, &st) != 0) {
		r = errno == ENOENT ? CUBEID_ERR_NOT_FOUND : CUBEID_ERR_IO;
		if (asprintf(err, "%s: %s", path, strerror(errno)) < 0)
			*err = NULL;
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		if (asprintf(err, "%s: not a regular file", path) < 0)
			*err = NULL;
		return CUBEID_ERR_IO;
	}
	if (st.st_uid != geteuid()) {
		if (asprintf(err, "%s: owned by uid %lu, not by the agent's uid %lu: refused", path,
		             (unsigned long)st.st_uid, (unsigned long)geteuid()) < 0)
			*err = NULL;
		r = CUBEID_ERR_PERMISSION;
	} else if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		if (asprintf(
		            err,
		            "%s: readable or writable by others (mode %04o): refused; chmod 600 it",
		            path, (unsigned)(st.st_mode & 07777)) < 0)
			*err = NULL;
		r = CUBEID_ERR_PERMISSION;
	}
	return r;
}
