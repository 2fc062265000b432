/* Helpers for tests/test-ca.c and tests/test-x509svid.c. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "tests/x509-test-util.h"

EVP_PKEY *
tu_ec_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	ck_assert_ptr_nonnull(k);
	return k;
}

static void
add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext;

	if (value == NULL)
		return;
	ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	ck_assert_msg(ext != NULL, "extension %d = %s", nid, value);
	ck_assert_int_eq(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

X509 *
tu_cert(const struct tu_spec *s)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX v3;
	unsigned char serial[16];
	BIGNUM *bn;

	ck_assert_ptr_nonnull(x);
	ck_assert_int_eq(X509_set_version(x, X509_VERSION_3), 1);
	ck_assert_int_eq(RAND_bytes(serial, sizeof(serial)), 1);
	serial[0] = (serial[0] & 0x7f) | 0x01;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                           (const unsigned char *)(s->cn ? s->cn : "test"), -1, -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, s->issuer ? X509_get_subject_name(s->issuer) : name);
	X509_set_pubkey(x, s->key);
	X509_gmtime_adj(X509_getm_notBefore(x), s->nb);
	X509_gmtime_adj(X509_getm_notAfter(x), s->na);
	X509V3_set_ctx(&v3, s->issuer ? s->issuer : x, x, NULL, NULL, 0);
	add_ext(x, &v3, NID_basic_constraints, s->bc);
	add_ext(x, &v3, NID_key_usage, s->ku);
	add_ext(x, &v3, NID_ext_key_usage, s->eku);
	add_ext(x, &v3, NID_subject_key_identifier, "hash");
	add_ext(x, &v3, NID_authority_key_identifier, "keyid:always");
	add_ext(x, &v3, NID_subject_alt_name, s->san);
	X509_NAME_free(name);
	ck_assert_int_gt(X509_sign(x, s->signer, EVP_sha256()), 0);
	return x;
}

void
tu_write_pem(const char *path, X509 *const *certs, size_t n)
{
	FILE *f = fopen(path, "w");
	size_t i;

	ck_assert_ptr_nonnull(f);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(PEM_write_X509(f, certs[i]), 1);
	ck_assert_int_eq(fclose(f), 0);
}

void
tu_write_str(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(s, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
}

int
tu_openssl_verify(const char *root, const char *untrusted, const char *leaf)
{
	char *openssl = th_which("openssl");
	char *argv[8];
	int i = 0, rc;

	if (openssl == NULL)
		th_skip("the openssl command is missing (Debian package 'openssl')");
	argv[i++] = openssl;
	argv[i++] = "verify";
	argv[i++] = "-CAfile";
	argv[i++] = (char *)root;
	if (untrusted != NULL) {
		argv[i++] = "-untrusted";
		argv[i++] = (char *)untrusted;
	}
	argv[i++] = (char *)leaf;
	argv[i] = NULL;
	rc = th_run(argv, "/dev/null");
	free(openssl);
	return rc;
}

void
tu_two_tokens_setup(struct th_token *a, struct th_token *b)
{
	char *conf_a, *src;
	DIR *d;
	struct dirent *e;

	th_token_setup(a);
	th_token_setup(b);
	if (a->dir == NULL || b->dir == NULL)
		return; /* TPM lane: one token */
	/* move b's token into a's token directory, and point SoftHSM2 there */
	ck_assert_int_ge(asprintf(&src, "%s/tokens", b->dir), 0);
	d = opendir(src);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL) {
		char *from, *to;

		if (e->d_name[0] == '.')
			continue;
		ck_assert_int_ge(asprintf(&from, "%s/%s", src, e->d_name), 0);
		ck_assert_int_ge(asprintf(&to, "%s/tokens/%s", a->dir, e->d_name), 0);
		ck_assert_int_eq(rename(from, to), 0);
		free(from);
		free(to);
	}
	closedir(d);
	ck_assert_int_ge(asprintf(&conf_a, "%s/softhsm2.conf", a->dir), 0);
	setenv("SOFTHSM2_CONF", conf_a, 1);
	free(conf_a);
	free(src);
}

void
tu_two_tokens_teardown(struct th_token *a, struct th_token *b)
{
	th_token_teardown(b);
	th_token_teardown(a);
}
