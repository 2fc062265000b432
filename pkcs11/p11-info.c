/*
 * What `cubeid token info` shows (<cubeid/token-info.h>): the module, its
 * slots, the chosen token and its mechanisms, as one JSON object.  It reads
 * what the rest of the public API does not say (CK_INFO, slots, mechanism
 * details) and never logs in.
 */
#include "config.h"

#include "pkcs11/p11-internal.h"

#include <cubeid/token-info.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

struct flag_name {
	CK_FLAGS flag;
	const char *name;
};

static const struct flag_name slot_flags[] = {
        {CKF_TOKEN_PRESENT, "token-present"},
        {CKF_REMOVABLE_DEVICE, "removable-device"},
        {CKF_HW_SLOT, "hardware-slot"},
        {0, NULL},
};

static const struct flag_name token_flags[] = {
        {CKF_RNG, "rng"},
        {CKF_WRITE_PROTECTED, "write-protected"},
        {CKF_LOGIN_REQUIRED, "login-required"},
        {CKF_USER_PIN_INITIALIZED, "user-pin-initialized"},
        {CKF_RESTORE_KEY_NOT_NEEDED, "restore-key-not-needed"},
        {CKF_CLOCK_ON_TOKEN, "clock-on-token"},
        {CKF_PROTECTED_AUTHENTICATION_PATH, "protected-authentication-path"},
        {CKF_DUAL_CRYPTO_OPERATIONS, "dual-crypto-operations"},
        {CKF_TOKEN_INITIALIZED, "token-initialized"},
        {CKF_SECONDARY_AUTHENTICATION, "secondary-authentication"},
        {CKF_USER_PIN_COUNT_LOW, "user-pin-count-low"},
        {CKF_USER_PIN_FINAL_TRY, "user-pin-final-try"},
        {CKF_USER_PIN_LOCKED, "user-pin-locked"},
        {CKF_USER_PIN_TO_BE_CHANGED, "user-pin-to-be-changed"},
        {CKF_SO_PIN_COUNT_LOW, "so-pin-count-low"},
        {CKF_SO_PIN_FINAL_TRY, "so-pin-final-try"},
        {CKF_SO_PIN_LOCKED, "so-pin-locked"},
        {CKF_SO_PIN_TO_BE_CHANGED, "so-pin-to-be-changed"},
        {0, NULL},
};

static const struct flag_name mech_flags[] = {
        {CKF_HW, "hw"},
        {CKF_ENCRYPT, "encrypt"},
        {CKF_DECRYPT, "decrypt"},
        {CKF_DIGEST, "digest"},
        {CKF_SIGN, "sign"},
        {CKF_SIGN_RECOVER, "sign-recover"},
        {CKF_VERIFY, "verify"},
        {CKF_VERIFY_RECOVER, "verify-recover"},
        {CKF_GENERATE, "generate"},
        {CKF_GENERATE_KEY_PAIR, "generate-key-pair"},
        {CKF_WRAP, "wrap"},
        {CKF_UNWRAP, "unwrap"},
        {CKF_DERIVE, "derive"},
        {CKF_EC_F_P, "ec-f-p"},
        {CKF_EC_NAMEDCURVE, "ec-named-curve"},
        {CKF_EC_UNCOMPRESS, "ec-uncompress"},
        {CKF_EC_COMPRESS, "ec-compress"},
        {0, NULL},
};

static json_t *
flags_json(CK_FLAGS flags, const struct flag_name *names)
{
	json_t *a = json_array();

	for (; names->name != NULL; names++)
		if (flags & names->flag)
			json_array_append_new(a, json_string(names->name));
	return a;
}

static json_t *
field_json(const CK_UTF8CHAR *src, size_t len)
{
	char buf[80];
	json_t *j;

	p11_strfield(buf, sizeof(buf), src, len);
	/* Token strings are meant to be UTF-8 but nothing checks that, and
	 * jansson refuses invalid UTF-8. */
	j = json_string(buf);
	return j != NULL ? j : json_string("(not UTF-8)");
}

static json_t *
version_json(CK_VERSION v)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%u.%u", v.major, v.minor);
	return json_string(buf);
}

static json_t *
module_json(const struct p11_module *mod)
{
	json_t *o = json_object();

	json_object_set_new(o, "path", json_string(mod->path));
	json_object_set_new(
	        o, "interface",
	        json_string(mod->via_interface ? "C_GetInterface" : "C_GetFunctionList"));
	json_object_set_new(o, "cryptoki_version", version_json(mod->info.cryptokiVersion));
	json_object_set_new(o, "manufacturer",
	                    field_json(mod->info.manufacturerID, sizeof(mod->info.manufacturerID)));
	json_object_set_new(
	        o, "library",
	        field_json(mod->info.libraryDescription, sizeof(mod->info.libraryDescription)));
	json_object_set_new(o, "library_version", version_json(mod->info.libraryVersion));
	return o;
}

/* All slots, present token or not. */
static int
slots_json(const struct p11_module *mod, json_t **out)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i;
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_RV rv;
	json_t *a = NULL, *o;
	int r;

	*out = NULL;
	if ((rv = mod->f->C_GetSlotList(CK_FALSE, NULL, &n)) != CKR_OK)
		return p11_fail("C_GetSlotList", rv);
	if (n > 4096)
		return CUBEID_ERR_TOO_LARGE;
	if (n > 0 && (slots = calloc(n, sizeof(*slots))) == NULL)
		return CUBEID_ERR_NOMEM;
	if (n > 0 && (rv = mod->f->C_GetSlotList(CK_FALSE, slots, &n)) != CKR_OK) {
		r = p11_fail("C_GetSlotList", rv);
		goto out;
	}
	a = json_array();
	for (i = 0; i < n; i++) {
		o = json_object();
		json_object_set_new(o, "id", json_integer((json_int_t)slots[i]));
		if ((rv = mod->f->C_GetSlotInfo(slots[i], &si)) == CKR_OK) {
			json_object_set_new(
			        o, "description",
			        field_json(si.slotDescription, sizeof(si.slotDescription)));
			json_object_set_new(
			        o, "manufacturer",
			        field_json(si.manufacturerID, sizeof(si.manufacturerID)));
			json_object_set_new(o, "flags", flags_json(si.flags, slot_flags));
			json_object_set_new(o, "token_present",
			                    json_boolean(si.flags & CKF_TOKEN_PRESENT));
			if ((si.flags & CKF_TOKEN_PRESENT) &&
			    mod->f->C_GetTokenInfo(slots[i], &ti) == CKR_OK) {
				json_object_set_new(o, "token_initialized",
				                    json_boolean(ti.flags & CKF_TOKEN_INITIALIZED));
				if (ti.flags & CKF_TOKEN_INITIALIZED)
					json_object_set_new(o, "token_label",
					                    field_json(ti.label, sizeof(ti.label)));
			}
		} else {
			json_object_set_new(o, "error", json_string(p11_rv_name(rv)));
		}
		json_array_append_new(a, o);
	}
	*out = a;
	a = NULL;
	r = CUBEID_OK;
out:
	json_decref(a);
	free(slots);
	return r;
}

static json_t *
mechs_json(const cubeid_token *tok)
{
	CK_MECHANISM_INFO mi;
	CK_ULONG i;
	json_t *a = json_array(), *o;
	const char *name;
	char buf[48];

	for (i = 0; i < tok->n_mechs; i++) {
		o = json_object();
		name = p11_mech_name(tok->mechs[i]);
		if (name == NULL) {
			if (tok->mechs[i] & CKM_VENDOR_DEFINED)
				snprintf(buf, sizeof(buf), "CKM_VENDOR_DEFINED+0x%lx",
				         (unsigned long)(tok->mechs[i] & ~CKM_VENDOR_DEFINED));
			else
				snprintf(buf, sizeof(buf), "0x%08lx", (unsigned long)tok->mechs[i]);
			name = buf;
		}
		json_object_set_new(o, "name", json_string(name));
		json_object_set_new(o, "type", json_integer((json_int_t)tok->mechs[i]));
		if (tok->f->C_GetMechanismInfo(tok->slot, tok->mechs[i], &mi) == CKR_OK) {
			json_object_set_new(o, "min_key_size",
			                    json_integer((json_int_t)mi.ulMinKeySize));
			json_object_set_new(o, "max_key_size",
			                    json_integer((json_int_t)mi.ulMaxKeySize));
			json_object_set_new(o, "flags", flags_json(mi.flags, mech_flags));
		}
		json_array_append_new(a, o);
	}
	return a;
}

static json_t *
token_json(const cubeid_token *tok)
{
	const CK_TOKEN_INFO *ti = &tok->ti;
	json_t *o = json_object();
	char *uri = NULL;

	if (cubeid_token_uri(tok, &uri) == CUBEID_OK)
		json_object_set_new(o, "uri", json_string(uri));
	free(uri);
	json_object_set_new(o, "slot", json_integer((json_int_t)tok->slot));
	json_object_set_new(o, "label", json_string(tok->label));
	json_object_set_new(o, "serial", json_string(tok->serial));
	json_object_set_new(o, "model", json_string(tok->model));
	json_object_set_new(o, "manufacturer", json_string(tok->manufacturer));
	json_object_set_new(o, "hardware_version", version_json(ti->hardwareVersion));
	json_object_set_new(o, "firmware_version", version_json(ti->firmwareVersion));
	json_object_set_new(o, "login_required", json_boolean(ti->flags & CKF_LOGIN_REQUIRED));
	json_object_set_new(o, "pin_min_len", json_integer((json_int_t)ti->ulMinPinLen));
	json_object_set_new(o, "pin_max_len", json_integer((json_int_t)ti->ulMaxPinLen));
	json_object_set_new(o, "flags", flags_json(ti->flags, token_flags));
	json_object_set_new(o, "mechanisms", mechs_json(tok));
	return o;
}

int
cubeid_token_info_module(const char *module_path, json_t **out)
{
	struct p11_module *mod = NULL;
	json_t *info = NULL, *slots = NULL;
	int r;

	*out = NULL;
	if ((r = p11_module_get(module_path, NULL, &mod)) != CUBEID_OK)
		return r;
	if ((r = slots_json(mod, &slots)) != CUBEID_OK)
		goto out;
	if ((info = json_object()) == NULL) {
		r = CUBEID_ERR_NOMEM;
		goto out;
	}
	json_object_set_new(info, "module", module_json(mod));
	json_object_set(info, "slots", slots);
	*out = info;
	info = NULL;
out:
	json_decref(slots);
	json_decref(info);
	p11_module_put(mod);
	return r;
}

int
cubeid_token_info_add_token(json_t *info, const cubeid_token *tok)
{
	json_t *s;
	size_t i;

	json_array_foreach(json_object_get(info, "slots"), i, s)
	        json_object_set_new(s, "selected",
	                            json_boolean((CK_SLOT_ID)json_integer_value(
	                                                 json_object_get(s, "id")) == tok->slot));
	return json_object_set_new(info, "token", token_json(tok)) == 0 ? CUBEID_OK
	                                                                : CUBEID_ERR_NOMEM;
}
