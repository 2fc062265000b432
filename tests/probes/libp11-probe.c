/*
 * libp11-probe: check two libp11 facts that decided the design of the
 * token layer's OpenSSL bridge (docs/pkcs11.md, "Why not libp11").
 *
 *   1. PKCS11_generate_key(token, EVP_PKEY_EC, 256, ...) makes an EC key?
 *   2. PKCS11_enumerate_keys() still works once the token holds an Ed25519
 *      key pair (CKK_EC_EDWARDS)?
 *
 * It makes its own throwaway SoftHSM2 token in a temp dir (SOFTHSM2_CONF),
 * so it touches nothing else.  Build and run (not part of the build):
 *
 *   cc -o /tmp/libp11-probe tests/probes/libp11-probe.c \
 *      $(pkg-config --cflags --libs libp11 p11-kit-1 libcrypto) -ldl
 *   /tmp/libp11-probe [/usr/lib/softhsm/libsofthsm2.so]
 *
 * Output: one "RESULT" line per fact.  Exit 0 when both ran.
 */
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* on purpose */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libp11.h>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#define PIN    "1234"
#define SO_PIN "123456"
#define LABEL  "libp11-probe"

static CK_FUNCTION_LIST_PTR f;

static void
die(const char *what, CK_RV rv)
{
	fprintf(stderr, "libp11-probe: %s failed: 0x%lx\n", what, (unsigned long)rv);
	exit(2);
}

static const char *
type_name(int t)
{
	switch (t) {
	case EVP_PKEY_RSA:
		return "RSA";
	case EVP_PKEY_EC:
		return "EC";
	default:
		return "other";
	}
}

/* A token on the first free slot, through the module itself. */
static CK_SLOT_ID
init_token(const char *module)
{
	CK_C_GetFunctionList getfl;
	CK_SLOT_ID slots[16], slot = (CK_SLOT_ID)-1;
	CK_ULONG n = 16, i;
	CK_TOKEN_INFO ti;
	CK_UTF8CHAR lab[32];
	CK_SESSION_HANDLE s;
	CK_RV rv;
	void *dl;

	if ((dl = dlopen(module, RTLD_NOW)) == NULL ||
	    (getfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL ||
	    getfl(&f) != CKR_OK) {
		fprintf(stderr, "libp11-probe: cannot load %s\n", module);
		exit(2);
	}
	if ((rv = f->C_Initialize(NULL)) != CKR_OK)
		die("C_Initialize", rv);
	if ((rv = f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
		die("C_GetSlotList", rv);
	for (i = 0; i < n && slot == (CK_SLOT_ID)-1; i++)
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    !(ti.flags & CKF_TOKEN_INITIALIZED))
			slot = slots[i];
	memset(lab, ' ', sizeof(lab));
	memcpy(lab, LABEL, strlen(LABEL));
	if ((rv = f->C_InitToken(slot, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), lab)) != CKR_OK)
		die("C_InitToken", rv);
	n = 16;
	f->C_GetSlotList(CK_TRUE, slots, &n);
	for (i = 0; i < n; i++)
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    memcmp(ti.label, lab, sizeof(lab)) == 0)
			slot = slots[i];
	if ((rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s)) !=
	    CKR_OK)
		die("C_OpenSession", rv);
	if ((rv = f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN))) != CKR_OK)
		die("C_Login(SO)", rv);
	if ((rv = f->C_InitPIN(s, (CK_UTF8CHAR_PTR)PIN, strlen(PIN))) != CKR_OK)
		die("C_InitPIN", rv);
	f->C_CloseSession(s);
	return slot;
}

/* An Ed25519 token key pair, made with the raw module (libp11 cannot). */
static CK_RV
make_ed25519(CK_SLOT_ID slot)
{
	static CK_BYTE oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
	CK_MECHANISM mech = {CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0};
	CK_BBOOL yes = CK_TRUE;
	CK_BYTE id[] = {0xed, 0x25, 0x51, 0x09};
	char label[] = "probe-ed25519";
	CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, sizeof(yes)},
	                      {CKA_EC_PARAMS, oid_ed25519, sizeof(oid_ed25519)},
	                      {CKA_VERIFY, &yes, sizeof(yes)},
	                      {CKA_LABEL, label, strlen(label)},
	                      {CKA_ID, id, sizeof(id)}};
	CK_ATTRIBUTE priv[] = {
	        {CKA_TOKEN, &yes, sizeof(yes)},    {CKA_PRIVATE, &yes, sizeof(yes)},
	        {CKA_SIGN, &yes, sizeof(yes)},     {CKA_SENSITIVE, &yes, sizeof(yes)},
	        {CKA_LABEL, label, strlen(label)}, {CKA_ID, id, sizeof(id)}};
	CK_OBJECT_HANDLE hpub, hpriv;
	CK_SESSION_HANDLE s;
	CK_RV rv;

	if ((rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s)) !=
	    CKR_OK)
		return rv;
	rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN));
	if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = f->C_GenerateKeyPair(s, &mech, pub, 5, priv, 6, &hpub, &hpriv);
	f->C_CloseSession(s);
	return rv;
}

static int
enumerate(PKCS11_TOKEN *tok, const char *when)
{
	PKCS11_KEY *keys = NULL;
	unsigned int n = 0, i;
	int rc = PKCS11_enumerate_keys(tok, &keys, &n);

	printf("  PKCS11_enumerate_keys %s: returned %d, %u key(s)", when, rc, n);
	for (i = 0; rc == 0 && i < n; i++)
		printf("%s%s '%s'", i ? "," : ":", type_name(PKCS11_get_key_type(&keys[i])),
		       keys[i].label ? keys[i].label : "");
	printf("\n");
	return rc;
}

int
main(int argc, char **argv)
{
	const char *module = argc > 1 ? argv[1] : "/usr/lib/softhsm/libsofthsm2.so";
	char dir[] = "/tmp/libp11-probe.XXXXXX", path[512], cmd[600];
	PKCS11_CTX *ctx;
	PKCS11_SLOT *slots, *slot;
	PKCS11_KEY *keys = NULL;
	unsigned int nslots, n = 0, i;
	CK_RV rv;
	FILE *fp;
	int rc, rc2, ec_ok = 0, rsa_made = 0;

	if (mkdtemp(dir) == NULL)
		return 2;
	snprintf(path, sizeof(path), "%s/tokens", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/softhsm2.conf", dir);
	fp = fopen(path, "w");
	fprintf(fp, "directories.tokendir = %s/tokens\nobjectstore.backend = file\n", dir);
	fclose(fp);
	setenv("SOFTHSM2_CONF", path, 1);
	(void)init_token(module);
	/* libp11 initialises the module itself. */
	f->C_Finalize(NULL);

	printf("libp11-probe: module %s\n", module);
	ctx = PKCS11_CTX_new();
	if (PKCS11_CTX_load(ctx, module) != 0 || PKCS11_enumerate_slots(ctx, &slots, &nslots) != 0)
		die("PKCS11_CTX_load/enumerate_slots", 0);
	if ((slot = PKCS11_find_token(ctx, slots, nslots)) == NULL)
		die("PKCS11_find_token", 0);
	if (PKCS11_open_session(slot, 1) != 0 || PKCS11_login(slot, 0, PIN) != 0)
		die("PKCS11_open_session/login", 0);

	/* 1. Ask for EC keys.  With bits=256 a key that was really EC would
	 * be P-256; an RSA key of 256 bits is refused by the token.  With
	 * bits=2048 (no EC curve has that size) we see what is made. */
	rc = PKCS11_generate_key(slot->token, EVP_PKEY_EC, 256, "probe-ec-256",
	                         (unsigned char *)"\x01", 1);
	printf("  PKCS11_generate_key(EVP_PKEY_EC, 256): returned %d\n", rc);
	rc2 = PKCS11_generate_key(slot->token, EVP_PKEY_EC, 2048, "probe-ec-2048",
	                          (unsigned char *)"\x02", 1);
	printf("  PKCS11_generate_key(EVP_PKEY_EC, 2048): returned %d\n", rc2);
	if (PKCS11_enumerate_keys(slot->token, &keys, &n) == 0) {
		for (i = 0; i < n; i++) {
			int t = PKCS11_get_key_type(&keys[i]);
			printf("  key '%s' is %s\n", keys[i].label ? keys[i].label : "",
			       type_name(t));
			if (t == EVP_PKEY_EC)
				ec_ok = 1;
			if (t == EVP_PKEY_RSA)
				rsa_made = 1;
		}
	}
	printf("RESULT 1: asked for EC keys: %s\n",
	       ec_ok ? "an EC key was made"
	       : rsa_made && rc != 0
	               ? "bits=256 failed (a 256-bit RSA key is refused) and bits=2048 made an "
	                 "RSA key: the algorithm is ignored"
	               : "no EC key was made");

	/* 2. Add an Ed25519 key pair behind libp11's back, and enumerate on a
	 * fresh context (libp11 caches what it enumerated). */
	rv = make_ed25519(PKCS11_get_slotid_from_slot(slot));
	printf("  C_GenerateKeyPair(CKM_EC_EDWARDS_KEY_PAIR_GEN): 0x%lx\n", (unsigned long)rv);
	PKCS11_release_all_slots(ctx, slots, nslots);
	PKCS11_CTX_unload(ctx);
	PKCS11_CTX_free(ctx);
	ctx = PKCS11_CTX_new();
	if (PKCS11_CTX_load(ctx, module) != 0 || PKCS11_enumerate_slots(ctx, &slots, &nslots) != 0)
		die("PKCS11_CTX_load (again)", 0);
	slot = PKCS11_find_token(ctx, slots, nslots);
	if (slot == NULL || PKCS11_open_session(slot, 1) != 0 || PKCS11_login(slot, 0, PIN) != 0)
		die("PKCS11_login (again)", 0);
	if (rv != CKR_OK) {
		printf("RESULT 2: not tested: this SoftHSM2 cannot make Ed25519 keys\n");
	} else {
		rc = enumerate(slot->token, "with an Ed25519 key on the token");
		printf("RESULT 2: with an Ed25519 key on the token, key enumeration %s\n",
		       rc != 0 ? "FAILS" : "works");
	}
	PKCS11_release_all_slots(ctx, slots, nslots);
	PKCS11_CTX_unload(ctx);
	PKCS11_CTX_free(ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "libp11-probe: could not remove %s\n", dir);
	return 0;
}
