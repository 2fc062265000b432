/*
 * libFuzzer target: registration entries and the agent config, both YAML
 * (libyaml), plus matching a fixed workload against whatever parsed, and
 * the pod-list JSON used by attestation.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/attest-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct entry_set *set = NULL;
	struct agent_config *cfg = NULL;
	struct selector_set sel = {0}, k8s = {0};
	const struct reg_entry **m = NULL;
	char *err = NULL, **ids = NULL;
	size_t n = 0, i;
	bool found;
	int r;

	r = entries_parse(buf, size, "fuzz.yaml", &set, &err);
	if ((r == CUBEID_OK) != (set != NULL))
		__builtin_trap();
	if (r == CUBEID_OK && err != NULL)
		__builtin_trap();
	free(err);
	err = NULL;
	if (set != NULL) {
		/* a workload with a bit of everything */
		selector_set_add(&sel, "unix:uid", "1000");
		selector_set_add(&sel, "unix:gid", "1000");
		selector_set_add(&sel, "k8s:ns", "default");
		selector_set_add(&sel, "k8s:sa", "web");
		selector_set_add(&sel, "k8s:pod-label", "app:web");
		if (entries_match(set, &sel, "example.org", &m, &ids, &n) != CUBEID_OK && n != 0)
			__builtin_trap();
		for (i = 0; i < n; i++) {
			/* every match really has all its selectors */
			if (entries_first_missing(m[i], &sel) != NULL)
				__builtin_trap();
			if (strncmp(ids[i], "spiffe://example.org", 20) != 0)
				__builtin_trap();
			free(ids[i]);
		}
		free(ids);
		free(m);
		selector_set_clear(&sel);
		entries_free(set);
	}

	r = config_parse(buf, size, "fuzz.yaml", &cfg, &err);
	if ((r == CUBEID_OK) != (cfg != NULL))
		__builtin_trap();
	free(err);
	config_free(cfg);

	if (size > 0 && (data[0] == '{' || data[0] == '['))
		(void)attest_k8s_from_json(buf, size, "5f3c1a2b-7d4e-4f6a-9b8c-0d1e2f3a4b5c",
		                           "3f1e2d3c4b5a69788796a5b4c3d2e1f0", &k8s, &found);
	selector_set_clear(&k8s);
	return 0;
}
