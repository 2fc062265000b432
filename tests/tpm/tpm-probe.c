/*
 * tpm-probe: what a PKCS#11 token (tpm2-pkcs11 in particular) supports, by
 * trying it.  Not part of the build or the suite; docs/pkcs11-tpm-notes.md
 * records its findings.  Run it inside a lane environment:
 *
 *   bash tests/tpm/tpm-env.sh start /tmp/t && . /tmp/t/env
 *   cc -O2 -o /tmp/tpm-probe tests/tpm/tpm-probe.c $(pkg-config --cflags p11-kit-1) -ldl -lpthread
 *   /tmp/tpm-probe            # add "limit" to count keys per process
 *   bash tests/tpm/tpm-env.sh stop /tmp/t
 *
 * It reads the module, token label and PIN file from CUBEID_TEST_MODULE,
 * CUBEID_TEST_TOKEN_LABEL and CUBEID_TEST_PIN_FILE (the lane's env file).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR f;
static CK_SLOT_ID slot;
static char pin[256];
/* Extra attributes for the next gen() call's private/public template. */
static CK_ATTRIBUTE extra_priv[4], extra_pub[4];
static int n_extra_priv, n_extra_pub;

static const CK_BYTE oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const CK_BYTE oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *
rvs(CK_RV rv)
{
	static char buf[64];

	switch (rv) {
	case CKR_OK:
		return "CKR_OK";
	case CKR_ATTRIBUTE_READ_ONLY:
		return "CKR_ATTRIBUTE_READ_ONLY";
	case CKR_ATTRIBUTE_SENSITIVE:
		return "CKR_ATTRIBUTE_SENSITIVE";
	case CKR_ATTRIBUTE_TYPE_INVALID:
		return "CKR_ATTRIBUTE_TYPE_INVALID";
	case CKR_ATTRIBUTE_VALUE_INVALID:
		return "CKR_ATTRIBUTE_VALUE_INVALID";
	case CKR_TEMPLATE_INCONSISTENT:
		return "CKR_TEMPLATE_INCONSISTENT";
	case CKR_TEMPLATE_INCOMPLETE:
		return "CKR_TEMPLATE_INCOMPLETE";
	case CKR_FUNCTION_NOT_SUPPORTED:
		return "CKR_FUNCTION_NOT_SUPPORTED";
	case CKR_MECHANISM_INVALID:
		return "CKR_MECHANISM_INVALID";
	case CKR_KEY_SIZE_RANGE:
		return "CKR_KEY_SIZE_RANGE";
	case CKR_GENERAL_ERROR:
		return "CKR_GENERAL_ERROR";
	case CKR_DEVICE_ERROR:
		return "CKR_DEVICE_ERROR";
	case CKR_DEVICE_MEMORY:
		return "CKR_DEVICE_MEMORY";
	case CKR_HOST_MEMORY:
		return "CKR_HOST_MEMORY";
	case CKR_KEY_UNEXTRACTABLE:
		return "CKR_KEY_UNEXTRACTABLE";
	case CKR_KEY_NOT_WRAPPABLE:
		return "CKR_KEY_NOT_WRAPPABLE";
	case CKR_WRAPPING_KEY_HANDLE_INVALID:
		return "CKR_WRAPPING_KEY_HANDLE_INVALID";
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
		return "CKR_KEY_FUNCTION_NOT_PERMITTED";
	case CKR_ACTION_PROHIBITED:
		return "CKR_ACTION_PROHIBITED";
	case CKR_USER_NOT_LOGGED_IN:
		return "CKR_USER_NOT_LOGGED_IN";
	case CKR_SESSION_READ_ONLY:
		return "CKR_SESSION_READ_ONLY";
	case CKR_ARGUMENTS_BAD:
		return "CKR_ARGUMENTS_BAD";
	case CKR_BUFFER_TOO_SMALL:
		return "CKR_BUFFER_TOO_SMALL";
	case CKR_OBJECT_HANDLE_INVALID:
		return "CKR_OBJECT_HANDLE_INVALID";
	case CKR_KEY_HANDLE_INVALID:
		return "CKR_KEY_HANDLE_INVALID";
	default:
		snprintf(buf, sizeof(buf), "0x%lx", (unsigned long)rv);
		return buf;
	}
}

struct keyspec {
	const char *name;
	CK_KEY_TYPE type;
	const CK_BYTE *oid;
	CK_ULONG oid_len;
	CK_ULONG bits;
};

static const struct keyspec specs[] = {
        {"ec-p256", CKK_EC, oid_p256, sizeof(oid_p256), 0},
        {"ec-p384", CKK_EC, oid_p384, sizeof(oid_p384), 0},
        {"rsa-2048", CKK_RSA, NULL, 0, 2048},
        {"rsa-3072", CKK_RSA, NULL, 0, 3072},
        {"rsa-4096", CKK_RSA, NULL, 0, 4096},
};

/* Generate a key pair.  token/sensitive/extractable: -1 leaves the
 * attribute out of the private template. */
static CK_RV
gen(CK_SESSION_HANDLE s, const struct keyspec *k, int token, int sensitive, int extractable,
    const char *label, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM m = {k->type == CKK_EC ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, NULL,
	                  0};
	CK_BBOOL t = CK_TRUE, tok = token ? CK_TRUE : CK_FALSE;
	CK_BBOOL sen = sensitive ? CK_TRUE : CK_FALSE, ext = extractable ? CK_TRUE : CK_FALSE;
	CK_ULONG bits = k->bits;
	CK_BYTE e[] = {1, 0, 1};
	CK_ATTRIBUTE pt[12], vt[16];
	int np = 0, nv = 0;

	pt[np++] = (CK_ATTRIBUTE){CKA_VERIFY, &t, sizeof(t)};
	pt[np++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
	if (token >= 0)
		pt[np++] = (CK_ATTRIBUTE){CKA_TOKEN, &tok, sizeof(tok)};
	if (k->type == CKK_EC) {
		pt[np++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)k->oid, k->oid_len};
	} else {
		pt[np++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof(bits)};
		pt[np++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, e, sizeof(e)};
		pt[np++] = (CK_ATTRIBUTE){CKA_ENCRYPT, &t, sizeof(t)};
		vt[nv++] = (CK_ATTRIBUTE){CKA_DECRYPT, &t, sizeof(t)};
	}
	vt[nv++] = (CK_ATTRIBUTE){CKA_SIGN, &t, sizeof(t)};
	vt[nv++] = (CK_ATTRIBUTE){CKA_PRIVATE, &t, sizeof(t)};
	vt[nv++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
	if (token >= 0)
		vt[nv++] = (CK_ATTRIBUTE){CKA_TOKEN, &tok, sizeof(tok)};
	if (sensitive >= 0)
		vt[nv++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &sen, sizeof(sen)};
	if (extractable >= 0)
		vt[nv++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &ext, sizeof(ext)};
	for (int x = 0; x < n_extra_priv; x++)
		vt[nv++] = extra_priv[x];
	for (int x = 0; x < n_extra_pub; x++)
		pt[np++] = extra_pub[x];
	return f->C_GenerateKeyPair(s, &m, pt, np, vt, nv, pub, priv);
}

static void
show_bool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE a, const char *name)
{
	CK_BBOOL b = 0;
	CK_ATTRIBUTE at = {a, &b, sizeof(b)};
	CK_RV rv = f->C_GetAttributeValue(s, o, &at, 1);

	if (rv == CKR_OK)
		printf(" %s=%s", name, b ? "true" : "false");
	else
		printf(" %s:%s", name, rvs(rv));
}

static void
show_attrs(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv)
{
	show_bool(s, priv, CKA_TOKEN, "TOKEN");
	show_bool(s, priv, CKA_SENSITIVE, "SENSITIVE");
	show_bool(s, priv, CKA_EXTRACTABLE, "EXTRACTABLE");
	show_bool(s, priv, CKA_ALWAYS_SENSITIVE, "ALWAYS_SENSITIVE");
	show_bool(s, priv, CKA_NEVER_EXTRACTABLE, "NEVER_EXTRACTABLE");
	show_bool(s, priv, CKA_LOCAL, "LOCAL");
}

static CK_SESSION_HANDLE
open_login(int login)
{
	CK_SESSION_HANDLE s;
	CK_RV rv;

	rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK) {
		printf("C_OpenSession: %s\n", rvs(rv));
		exit(1);
	}
	if (login) {
		rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
		if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
			printf("C_Login: %s\n", rvs(rv));
			exit(1);
		}
	}
	return s;
}

static void
probe_keygen(CK_SESSION_HANDLE s)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_RV rv;
	size_t i;
	double t0;

	printf("\n== key generation, token objects, default template ==\n");
	for (i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		t0 = now();
		rv = gen(s, &specs[i], 1, -1, -1, specs[i].name, &pub, &priv);
		printf("%-9s token: %s (%.2f s)", specs[i].name, rvs(rv), now() - t0);
		if (rv == CKR_OK)
			show_attrs(s, priv);
		printf("\n");
	}
	printf("\n== session objects (CKA_TOKEN=false) ==\n");
	for (i = 0; i < 4; i++) {
		rv = gen(s, &specs[i], 0, 1, 0, "session", &pub, &priv);
		printf("%-9s session: %s", specs[i].name, rvs(rv));
		if (rv == CKR_OK)
			show_attrs(s, priv);
		printf("\n");
	}
	printf("\n== CKA_TOKEN left out of the template ==\n");
	rv = gen(s, &specs[0], -1, 1, 0, "no-token-attr", &pub, &priv);
	printf("ec-p256 no CKA_TOKEN: %s", rvs(rv));
	if (rv == CKR_OK)
		show_attrs(s, priv);
	printf("\n");

	printf("\n== sensitive / extractable combinations (ec-p256 and rsa-2048, token) ==\n");
	for (i = 0; i < 4; i += 2) {
		static const int combos[][2] = {{1, 0}, {1, 1}, {0, 1}, {0, 0}};
		size_t c;
		for (c = 0; c < 4; c++) {
			rv = gen(s, &specs[i], 1, combos[c][0], combos[c][1], "combo", &pub, &priv);
			printf("%-9s SENSITIVE=%d EXTRACTABLE=%d: %s", specs[i].name, combos[c][0],
			       combos[c][1], rvs(rv));
			if (rv == CKR_OK) {
				CK_BYTE buf[4096];
				CK_ATTRIBUTE a = {i == 0 ? CKA_VALUE : CKA_PRIVATE_EXPONENT, buf,
				                  sizeof(buf)};
				show_attrs(s, priv);
				rv = f->C_GetAttributeValue(s, priv, &a, 1);
				printf(" read-secret:%s", rvs(rv));
				if (rv == CKR_OK)
					printf("(%lu bytes)", (unsigned long)a.ulValueLen);
			}
			printf("\n");
		}
	}
}

/* Which extra template attributes tpm2-pkcs11 refuses. */
static void
probe_template(CK_SESSION_HANDLE s)
{
	static CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
	static CK_BYTE id[20] = {1, 2, 3};
	static const struct {
		const char *what;
		int priv;
		CK_ATTRIBUTE a;
	} cases[] = {
	        {"priv CKA_DECRYPT=false", 1, {CKA_DECRYPT, &no, sizeof(no)}},
	        {"priv CKA_DECRYPT=true", 1, {CKA_DECRYPT, &yes, sizeof(yes)}},
	        {"priv CKA_DERIVE=false", 1, {CKA_DERIVE, &no, sizeof(no)}},
	        {"priv CKA_UNWRAP=false", 1, {CKA_UNWRAP, &no, sizeof(no)}},
	        {"pub CKA_ENCRYPT=false", 0, {CKA_ENCRYPT, &no, sizeof(no)}},
	        {"pub CKA_WRAP=false", 0, {CKA_WRAP, &no, sizeof(no)}},
	        {"priv CKA_ID (20 bytes)", 1, {CKA_ID, id, sizeof(id)}},
	        {"pub CKA_ID (20 bytes)", 0, {CKA_ID, id, sizeof(id)}},
	};
	CK_OBJECT_HANDLE pub, priv;
	size_t i, k;

	printf("\n== extra template attributes (ec-p256 / rsa-2048, token) ==\n");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		printf("%-24s", cases[i].what);
		for (k = 0; k < 3; k += 2) {
			n_extra_priv = n_extra_pub = 0;
			if (cases[i].priv)
				extra_priv[n_extra_priv++] = cases[i].a;
			else
				extra_pub[n_extra_pub++] = cases[i].a;
			printf(" %s: %s", specs[k].name,
			       rvs(gen(s, &specs[k], 1, 1, 0, "tmpl", &pub, &priv)));
		}
		printf("\n");
	}
	n_extra_priv = n_extra_pub = 0;
}

static void
probe_setattr(CK_SESSION_HANDLE s)
{
	CK_OBJECT_HANDLE pub, priv, found[4];
	CK_BYTE id[20];
	char lab[] = "relabelled";
	CK_ATTRIBUTE a_id = {CKA_ID, id, sizeof(id)};
	CK_ATTRIBUTE a_lab = {CKA_LABEL, lab, strlen(lab)};
	CK_ATTRIBUTE both[2] = {{CKA_ID, id, sizeof(id)}, {CKA_LABEL, lab, strlen(lab)}};
	CK_ULONG n = 0;
	CK_RV rv;
	size_t i;

	printf("\n== C_SetAttributeValue after generation ==\n");
	for (i = 0; i < sizeof(id); i++)
		id[i] = (CK_BYTE)(0xa0 + i);
	for (i = 0; i < 3; i += 2) {
		rv = gen(s, &specs[i], 1, 1, 0, "setattr", &pub, &priv);
		if (rv != CKR_OK) {
			printf("%s keygen: %s\n", specs[i].name, rvs(rv));
			continue;
		}
		printf("%-9s priv CKA_ID: %s", specs[i].name,
		       rvs(f->C_SetAttributeValue(s, priv, &a_id, 1)));
		printf(", pub CKA_ID: %s", rvs(f->C_SetAttributeValue(s, pub, &a_id, 1)));
		printf(", priv CKA_LABEL: %s", rvs(f->C_SetAttributeValue(s, priv, &a_lab, 1)));
		printf(", pub CKA_LABEL: %s", rvs(f->C_SetAttributeValue(s, pub, &a_lab, 1)));
		printf(", both at once on priv: %s\n",
		       rvs(f->C_SetAttributeValue(s, priv, both, 2)));
	}
	/* Does the new CKA_ID find the object? */
	rv = f->C_FindObjectsInit(s, &a_id, 1);
	if (rv == CKR_OK) {
		f->C_FindObjects(s, found, 4, &n);
		f->C_FindObjectsFinal(s);
	}
	printf("find by new CKA_ID: %s, %lu objects\n", rvs(rv), (unsigned long)n);
	/* Template-set CKA_ID at generation time is the alternative. */
}

static void
probe_wrap(CK_SESSION_HANDLE s)
{
	CK_MECHANISM kg = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ULONG len = 32;
	CK_BBOOL t = CK_TRUE, fa = CK_FALSE;
	CK_ATTRIBUTE at[] = {{CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_TOKEN, &t, sizeof(t)},
	                     {CKA_WRAP, &t, sizeof(t)},          {CKA_UNWRAP, &t, sizeof(t)},
	                     {CKA_ENCRYPT, &t, sizeof(t)},       {CKA_DECRYPT, &t, sizeof(t)}};
	CK_OBJECT_HANDLE aes, pub, priv, unw;
	CK_BYTE iv[16] = {0}, out[8192];
	CK_ULONG outlen = sizeof(out);
	CK_MECHANISM mechs[] = {{CKM_AES_KEY_WRAP_PAD, NULL, 0},
	                        {CKM_AES_KEY_WRAP, NULL, 0},
	                        {CKM_AES_CBC_PAD, iv, sizeof(iv)},
	                        {CKM_RSA_PKCS_OAEP, NULL, 0}};
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt = CKK_EC;
	CK_ATTRIBUTE ut[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                     {CKA_KEY_TYPE, &kt, sizeof(kt)},
	                     {CKA_TOKEN, &fa, sizeof(fa)},
	                     {CKA_SIGN, &t, sizeof(t)}};
	CK_RV rv;
	size_t i;

	printf("\n== C_WrapKey / C_UnwrapKey ==\n");
	printf("function list: C_WrapKey=%p C_UnwrapKey=%p\n", (void *)f->C_WrapKey,
	       (void *)f->C_UnwrapKey);
	/* Straight calls first: is the entry point implemented at all? */
	rv = gen(s, &specs[2], 1, 1, 0, "wrapper-rsa", &pub, &priv);
	if (rv == CKR_OK) {
		CK_OBJECT_HANDLE epub, epriv;
		outlen = sizeof(out);
		if (gen(s, &specs[0], 1, 1, 0, "wrapped-ec", &epub, &epriv) == CKR_OK)
			printf("C_WrapKey(RSA-OAEP pub, EC priv): %s\n",
			       rvs(f->C_WrapKey(s, &mechs[3], pub, epriv, out, &outlen)));
		memset(out, 0x5a, 256);
		printf("C_UnwrapKey(RSA-OAEP priv, 256 junk bytes): %s\n",
		       rvs(f->C_UnwrapKey(s, &mechs[3], priv, out, 256, ut, 4, &unw)));
	}
	/* Envelope alternative: RSA-OAEP encrypt/decrypt of a 32-byte secret.
	 * In a session of its own: a failed C_Decrypt leaves the operation
	 * active in tpm2-pkcs11 1.9 (later C_*Init give CKR_OPERATION_ACTIVE). */
	if (rv == CKR_OK) {
		CK_SESSION_HANDLE s0 = s;
		s = open_login(1);
		static const CK_MECHANISM_TYPE hs[][2] = {{CKM_SHA256, CKG_MGF1_SHA256},
		                                          {CKM_SHA_1, CKG_MGF1_SHA1}};
		size_t h;
		for (h = 0; h < 2; h++) {
			CK_RSA_PKCS_OAEP_PARAMS op = {hs[h][0], hs[h][1], CKZ_DATA_SPECIFIED, NULL,
			                              0};
			CK_MECHANISM om = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
			CK_BYTE secret[32], ct[512], pt[512];
			CK_ULONG ctl = sizeof(ct), ptl = sizeof(pt);
			memset(secret, 0x42, sizeof(secret));
			rv = f->C_EncryptInit(s, &om, pub);
			if (rv == CKR_OK)
				rv = f->C_Encrypt(s, secret, sizeof(secret), ct, &ctl);
			printf("RSA-OAEP(%s) C_Encrypt with token public key: %s",
			       h ? "SHA-1" : "SHA-256", rvs(rv));
			if (rv == CKR_OK) {
				rv = f->C_DecryptInit(s, &om, priv);
				if (rv == CKR_OK)
					rv = f->C_Decrypt(s, ct, ctl, pt, &ptl);
				printf(", C_Decrypt with token private key: %s, round trip %s",
				       rvs(rv),
				       rv == CKR_OK && ptl == 32 && memcmp(pt, secret, 32) == 0
				               ? "ok"
				               : "BAD");
			}
			printf("\n");
		}
		f->C_CloseSession(s);
		s = s0;
	}
	rv = f->C_GenerateKey(s, &kg, at, sizeof(at) / sizeof(at[0]), &aes);
	printf("AES-256 token key with CKA_WRAP: %s\n", rvs(rv));
	if (rv != CKR_OK) {
		at[2].type = CKA_ENCRYPT; /* retry without CKA_WRAP/UNWRAP */
		at[3].type = CKA_DECRYPT;
		rv = f->C_GenerateKey(s, &kg, at, sizeof(at) / sizeof(at[0]), &aes);
		printf("AES-256 token key without CKA_WRAP: %s\n", rvs(rv));
		if (rv != CKR_OK)
			return;
	}
	rv = gen(s, &specs[0], 1, 1, 1, "wrap-me", &pub, &priv);
	printf("extractable ec-p256 to wrap: %s\n", rvs(rv));
	if (rv != CKR_OK)
		return;
	for (i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
		outlen = sizeof(out);
		rv = f->C_WrapKey(s, &mechs[i], aes, priv, out, &outlen);
		printf("C_WrapKey mech 0x%lx: %s", (unsigned long)mechs[i].mechanism, rvs(rv));
		if (rv == CKR_OK) {
			printf(" (%lu bytes)", (unsigned long)outlen);
			rv = f->C_UnwrapKey(s, &mechs[i], aes, out, outlen, ut, 4, &unw);
			printf(", C_UnwrapKey: %s", rvs(rv));
		}
		printf("\n");
	}
	rv = f->C_UnwrapKey(s, &mechs[0], aes, out, 40, ut, 4, &unw);
	printf("C_UnwrapKey on junk: %s\n", rvs(rv));
}

struct signer {
	CK_OBJECT_HANDLE key;
	CK_MECHANISM_TYPE mech;
	double secs;
	unsigned long ops, fails;
};

static void *
sign_loop(void *arg)
{
	struct signer *sg = arg;
	CK_SESSION_HANDLE s = open_login(1);
	CK_MECHANISM m = {sg->mech, NULL, 0};
	CK_BYTE dg[32] = {1, 2, 3}, sig[512];
	CK_ULONG sl;
	double end = now() + sg->secs;

	while (now() < end) {
		sl = sizeof(sig);
		if (f->C_SignInit(s, &m, sg->key) != CKR_OK ||
		    f->C_Sign(s, dg, m.mechanism == CKM_ECDSA ? 32 : 32, sig, &sl) != CKR_OK)
			sg->fails++;
		else
			sg->ops++;
	}
	f->C_CloseSession(s);
	return NULL;
}

static void
probe_sign(CK_SESSION_HANDLE s)
{
	CK_OBJECT_HANDLE pub, priv, rpub, rpriv;
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
	CK_MECHANISM mp = {CKM_RSA_PKCS_PSS, &pss, sizeof(pss)};
	CK_MECHANISM ms = {CKM_SHA256_RSA_PKCS, NULL, 0};
	CK_MECHANISM me = {CKM_ECDSA_SHA256, NULL, 0};
	CK_BYTE dg[32] = {0}, sig[512], msg[100] = {0};
	CK_ULONG sl = sizeof(sig);
	struct signer sg[2];
	pthread_t th[2];
	CK_RV rv;
	int nt, i;

	printf("\n== signing ==\n");
	if (gen(s, &specs[0], 1, 1, 0, "sign-ec", &pub, &priv) != CKR_OK ||
	    gen(s, &specs[2], 1, 1, 0, "sign-rsa", &rpub, &rpriv) != CKR_OK) {
		printf("keygen failed\n");
		return;
	}
	rv = f->C_SignInit(s, &m, priv);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, dg, 32, sig, &sl);
	printf("CKM_ECDSA over a 32-byte digest: %s, %lu bytes (raw r||s if 64)\n", rvs(rv),
	       (unsigned long)sl);
	sl = sizeof(sig);
	rv = f->C_SignInit(s, &m, priv);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, dg, 20, sig, &sl);
	printf("CKM_ECDSA over a 20-byte input: %s\n", rvs(rv));
	sl = sizeof(sig);
	rv = f->C_SignInit(s, &me, priv);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, msg, sizeof(msg), sig, &sl);
	printf("CKM_ECDSA_SHA256 over a message: %s\n", rvs(rv));
	sl = sizeof(sig);
	rv = f->C_SignInit(s, &mp, rpriv);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, dg, 32, sig, &sl);
	printf("CKM_RSA_PKCS_PSS (SHA-256, salt 32) over a digest: %s, %lu bytes\n", rvs(rv),
	       (unsigned long)sl);
	sl = sizeof(sig);
	rv = f->C_SignInit(s, &ms, rpriv);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, msg, sizeof(msg), sig, &sl);
	printf("CKM_SHA256_RSA_PKCS over a message: %s\n", rvs(rv));
	/* Two-call size convention. */
	sl = 0;
	rv = f->C_SignInit(s, &m, priv);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, dg, 32, NULL, &sl);
	printf("C_Sign(NULL) size query: %s, %lu\n", rvs(rv), (unsigned long)sl);
	if (rv == CKR_OK) {
		CK_ULONG small = 10;
		rv = f->C_Sign(s, dg, 32, sig, &small);
		printf("C_Sign(buf too small): %s, needs %lu\n", rvs(rv), (unsigned long)small);
		if (rv == CKR_BUFFER_TOO_SMALL) {
			small = sizeof(sig);
			rv = f->C_Sign(s, dg, 32, sig, &small);
			printf("C_Sign retry in same operation: %s\n", rvs(rv));
		}
	}

	for (nt = 1; nt <= 2; nt++) {
		unsigned long ops = 0, fails = 0;
		for (i = 0; i < nt; i++) {
			sg[i] = (struct signer){priv, CKM_ECDSA, 3.0, 0, 0};
			pthread_create(&th[i], NULL, sign_loop, &sg[i]);
		}
		for (i = 0; i < nt; i++) {
			pthread_join(th[i], NULL);
			ops += sg[i].ops;
			fails += sg[i].fails;
		}
		printf("ECDSA P-256 sign, %d thread(s), own sessions: %.0f/s (%lu failures)\n", nt,
		       ops / 3.0, fails);
	}
	sg[0] = (struct signer){rpriv, CKM_RSA_PKCS, 3.0, 0, 0};
	sign_loop(&sg[0]);
	printf("RSA-2048 PKCS#1 v1.5 sign (32-byte input), 1 thread: %.0f/s (%lu failures)\n",
	       sg[0].ops / 3.0, sg[0].fails);
}

static void
probe_limit(CK_SESSION_HANDLE s)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_RV rv = CKR_OK;
	int n;
	double t0 = now();

	printf("\n== keys one process can generate (ec-p256, token objects, kept) ==\n");
	for (n = 0; n < 300; n++) {
		char lab[32];
		snprintf(lab, sizeof(lab), "limit-%d", n);
		rv = gen(s, &specs[0], 1, 1, 0, lab, &pub, &priv);
		if (rv != CKR_OK)
			break;
	}
	printf("generated %d keys, then %s (%.1f keys/s)\n", n, rvs(rv), n / (now() - t0));
	printf("after the failure: sign with an existing key ... ");
	{
		CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
		CK_BYTE dg[32] = {0}, sig[128];
		CK_ULONG sl = sizeof(sig);
		CK_OBJECT_HANDLE h[1];
		CK_ULONG cnt = 0;
		char lab[] = "limit-0";
		CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
		CK_ATTRIBUTE q[] = {{CKA_LABEL, lab, strlen(lab)}, {CKA_CLASS, &cls, sizeof(cls)}};
		f->C_FindObjectsInit(s, q, 2);
		f->C_FindObjects(s, h, 1, &cnt);
		f->C_FindObjectsFinal(s);
		rv = cnt ? f->C_SignInit(s, &m, h[0]) : CKR_GENERAL_ERROR;
		if (rv == CKR_OK)
			rv = f->C_Sign(s, dg, 32, sig, &sl);
		printf("%s\n", rvs(rv));
	}
}

static void
probe_limit_destroy(CK_SESSION_HANDLE s)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_RV rv = CKR_OK;
	int n;

	printf("\n== generate + destroy loop (ec-p256) ==\n");
	for (n = 0; n < 300; n++) {
		rv = gen(s, &specs[0], 1, 1, 0, "gd", &pub, &priv);
		if (rv != CKR_OK)
			break;
		f->C_DestroyObject(s, priv);
		f->C_DestroyObject(s, pub);
	}
	printf("generated+destroyed %d keys, then %s\n", n, rvs(rv));
}

int
main(int argc, char **argv)
{
	const char *mod = getenv("CUBEID_TEST_MODULE");
	const char *label = getenv("CUBEID_TEST_TOKEN_LABEL");
	const char *pinf = getenv("CUBEID_TEST_PIN_FILE");
	CK_C_GetFunctionList gfl;
	CK_C_INITIALIZE_ARGS ia = {0};
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16, i, nm = 256;
	CK_MECHANISM_TYPE mechs[256];
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE s;
	void *dl, *gi;
	FILE *fp;
	CK_RV rv;
	const char *mode = argc > 1 ? argv[1] : "all";

	if (!mod || !label || !pinf) {
		fprintf(stderr, "source the lane env file first\n");
		return 2;
	}
	if ((fp = fopen(pinf, "r")) == NULL || fgets(pin, sizeof(pin), fp) == NULL)
		return 2;
	fclose(fp);
	pin[strcspn(pin, "\r\n")] = '\0';
	if ((dl = dlopen(mod, RTLD_NOW)) == NULL) {
		fprintf(stderr, "%s\n", dlerror());
		return 2;
	}
	gi = dlsym(dl, "C_GetInterface");
	gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	printf("module %s\nC_GetInterface exported: %s\n", mod, gi ? "yes" : "no");
	gfl(&f);
	printf("function list version %d.%d\n", f->version.major, f->version.minor);
	ia.flags = CKF_OS_LOCKING_OK;
	rv = f->C_Initialize(&ia);
	printf("C_Initialize(CKF_OS_LOCKING_OK): %s\n", rvs(rv));
	f->C_GetSlotList(CK_TRUE, slots, &n);
	for (i = 0; i < n; i++)
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    strncmp((char *)ti.label, label, strlen(label)) == 0)
			break;
	if (i == n) {
		printf("token %s not found\n", label);
		return 1;
	}
	slot = slots[i];
	printf("token flags 0x%lx, max sessions %lu, max rw sessions %lu\n",
	       (unsigned long)ti.flags, (unsigned long)ti.ulMaxSessionCount,
	       (unsigned long)ti.ulMaxRwSessionCount);
	f->C_GetMechanismList(slot, mechs, &nm);
	printf("%lu mechanisms:", (unsigned long)nm);
	for (i = 0; i < nm; i++) {
		CK_MECHANISM_INFO mi;
		f->C_GetMechanismInfo(slot, mechs[i], &mi);
		printf(" 0x%lx[%lu-%lu,f=0x%lx]", (unsigned long)mechs[i],
		       (unsigned long)mi.ulMinKeySize, (unsigned long)mi.ulMaxKeySize,
		       (unsigned long)mi.flags);
	}
	printf("\n");
	s = open_login(1);
	if (strcmp(mode, "limit") == 0) {
		probe_limit(s);
	} else if (strcmp(mode, "template") == 0) {
		probe_template(s);
	} else if (strcmp(mode, "destroy") == 0) {
		probe_limit_destroy(s);
	} else {
		probe_keygen(s);
		probe_template(s);
		probe_setattr(s);
		probe_wrap(s);
		probe_sign(s);
	}
	f->C_CloseSession(s);
	f->C_Finalize(NULL);
	return 0;
}
