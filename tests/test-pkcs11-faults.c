/*
 * The token layer under faults a real token will not produce on demand:
 * CKR_DEVICE_REMOVED or CKR_SESSION_HANDLE_INVALID in the middle of a
 * signature, a mechanism the token lacks, a PIN the token starts rejecting.
 *
 * The layer loads tests/mock-p11.c, a shim that forwards every call to the
 * harness's real SoftHSM2 token ($CUBEID_MOCK_REAL_MODULE) and injects the
 * faults the test asks for through its mock_p11_* functions, which we reach
 * by dlopen(RTLD_NOLOAD) of the same file the layer loaded.
 */
#include "config.h"

#include "tests/harness.h"
#include "pkcs11/p11-internal.h"

#include <check.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

/* The mock's control functions. */
static void (*mock_fail_sign)(int count, CK_RV rv);
static void (*mock_hide_mechanism)(CK_MECHANISM_TYPE m);
static int (*mock_login_calls)(void);
static int (*mock_sign_calls)(void);
static void (*mock_reset)(void);
static void (*mock_outage)(CK_RV rv);
static void (*mock_token_back)(void);
static int (*mock_init_calls)(void);

static struct th_token th;
static cubeid_token *tok;
static char mock_path[PATH_MAX];

static void
mock_find(void)
{
	const char *b = getenv("CUBEID_BUILDDIR");
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/tests/.libs/mock-p11.so", b != NULL ? b : ".");
	if (realpath(path, mock_path) == NULL)
		th_skip("the fault-injecting module %s is not built (make check builds it)", path);
}

/* Open the harness token through the mock and bind its controls. */
static void
open_through_mock(void)
{
	struct cubeid_token_opts o = {0};
	void *dl;
	int r;

	o.module_path = mock_path;
	o.pin_file = th.pin_file;
	r = cubeid_token_open(th.uri, &o, &tok);
	ck_assert_msg(r == CUBEID_OK, "open through the mock: %s", cubeid_strerror(r));
	ck_assert_str_eq(cubeid_token_module_path(tok), mock_path);
	/* The layer loaded it: RTLD_NOLOAD finds that same copy. */
	dl = dlopen(mock_path, RTLD_NOLOAD | RTLD_NOW);
	ck_assert_msg(dl != NULL, "mock not loaded: %s", dlerror());
	*(void **)&mock_fail_sign = dlsym(dl, "mock_p11_fail_sign");
	*(void **)&mock_hide_mechanism = dlsym(dl, "mock_p11_hide_mechanism");
	*(void **)&mock_login_calls = dlsym(dl, "mock_p11_login_calls");
	*(void **)&mock_sign_calls = dlsym(dl, "mock_p11_sign_calls");
	*(void **)&mock_reset = dlsym(dl, "mock_p11_reset");
	*(void **)&mock_outage = dlsym(dl, "mock_p11_outage");
	*(void **)&mock_token_back = dlsym(dl, "mock_p11_token_back");
	*(void **)&mock_init_calls = dlsym(dl, "mock_p11_init_calls");
	ck_assert(mock_outage != NULL && mock_token_back != NULL && mock_init_calls != NULL);
	ck_assert(mock_fail_sign != NULL && mock_hide_mechanism != NULL &&
	          mock_login_calls != NULL && mock_sign_calls != NULL && mock_reset != NULL);
	dlclose(dl); /* drops only our reference */
}

static void
setup(void)
{
	th_token_setup(&th);
	if (th_is_tpm(&th))
		th_skip("fault injection wraps SoftHSM2 only (it changes the token's PIN)");
	mock_find();
	setenv("CUBEID_MOCK_REAL_MODULE", th.module, 1);
	open_through_mock();
	mock_reset();
}

static void
teardown(void)
{
	cubeid_token_free(tok);
	tok = NULL;
	th_token_teardown(&th);
}

static cubeid_key *
gen(cubeid_key_type type)
{
	struct cubeid_keygen_opts o = {0};
	cubeid_key *k = NULL;
	char label[64];
	int r;

	snprintf(label, sizeof(label), "faults-%s-%d", cubeid_key_type_name(type), (int)getpid());
	o.type = type;
	o.label = label;
	/* A token object: a session object would die with the session the
	 * fault closes (PKCS#11 ties it to the session that made it). */
	o.persistent = true;
	r = cubeid_key_generate(tok, &o, &k);
	ck_assert_msg(r == CUBEID_OK, "generate: %s", cubeid_strerror(r));
	return k;
}

/* Sign 32 random bytes with alg and check the signature with OpenSSL. */
static int
sign_verify(cubeid_key *k, cubeid_sig_alg alg)
{
	uint8_t data[32], sig[512], *der = NULL;
	size_t len = sizeof(sig), der_len = 0;
	const uint8_t *v = sig;
	EVP_PKEY *pub = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD_CTX *m;
	int r;

	RAND_bytes(data, sizeof(data));
	if ((r = cubeid_key_sign(k, alg, data, sizeof(data), sig, &len)) != CUBEID_OK)
		return r;
	ck_assert_int_eq(cubeid_key_public(k, &pub), CUBEID_OK);
	if (alg == CUBEID_SIG_ECDSA_SHA256) {
		ck_assert_int_eq(cubeid_ecdsa_raw_to_der(sig, len, &der, &der_len), CUBEID_OK);
		v = der;
		len = der_len;
	}
	m = EVP_MD_CTX_new();
	ck_assert_int_eq(EVP_DigestVerifyInit(m, &pctx, EVP_sha256(), NULL, pub), 1);
	if (alg == CUBEID_SIG_RSA_PSS_SHA256) {
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
		EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
	}
	ck_assert_msg(EVP_DigestVerify(m, v, len, data, sizeof(data)) == 1,
	              "signature made through the layer does not verify");
	EVP_MD_CTX_free(m);
	EVP_PKEY_free(pub);
	OPENSSL_free(der);
	return CUBEID_OK;
}

/* Run fn with stderr going to a file; return what was logged (caller frees). */
static char *
capture_stderr(int (*fn)(cubeid_key *, cubeid_sig_alg), cubeid_key *k, cubeid_sig_alg alg, int *ret)
{
	char path[PATH_MAX], *buf;
	int fd, saved;
	struct stat st;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/stderr.log", th.dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	*ret = fn(k, alg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ck_assert_int_eq(fstat(fd, &st), 0);
	buf = calloc(1, (size_t)st.st_size + 1);
	n = pread(fd, buf, (size_t)st.st_size, 0);
	ck_assert_int_eq(n, st.st_size);
	close(fd);
	fprintf(stderr, "%s", buf); /* keep it in the test log too */
	return buf;
}

/* ---- sessions the token drops in the middle of a signature ---- */

static void
fails_once_then_recovers(CK_RV rv)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256);

	mock_reset();
	mock_fail_sign(1, rv);
	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_ECDSA_SHA256), CUBEID_OK);
	/* The first C_Sign failed, the layer reopened a session and signed. */
	ck_assert_int_eq(mock_sign_calls(), 2);
	/* And the next signature needs no retry. */
	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_ECDSA_SHA256), CUBEID_OK);
	ck_assert_int_eq(mock_sign_calls(), 3);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}

static void
fails_always_bounded(CK_RV rv, int want)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256);
	uint8_t sig[64];
	size_t len = sizeof(sig);

	mock_reset();
	mock_fail_sign(1000, rv);
	ck_assert_int_eq(
	        cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, (const uint8_t *)"x", 1, sig, &len),
	        want);
	/* It retried, and stopped within the bound (the first try and
	 * P11_MAX_RETRIES more; re-finding the key handle, which SoftHSM2
	 * renumbers once every session is gone, takes some of those tries). */
	ck_assert_int_ge(mock_sign_calls(), 2);
	ck_assert_int_le(mock_sign_calls(), P11_MAX_RETRIES + 1);
	/* Once the device is back, signing works again. */
	mock_reset();
	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_ECDSA_SHA256), CUBEID_OK);
	ck_assert_int_eq(mock_sign_calls(), 1);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}

/* ---- an outage: the token is gone, then back (seen after C_Initialize) ---- */

static void
outage_then_recovers(CK_RV rv)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256);
	struct cubeid_token_health h;
	uint8_t sig[64];
	size_t len;
	double t0, t;
	int inits, r = CUBEID_ERR_P11_GENERAL, i;

	mock_reset();
	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_ECDSA_SHA256), CUBEID_OK);
	mock_outage(rv);
	len = sizeof(sig);
	ck_assert_int_ne(
	        cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, (const uint8_t *)"x", 1, sig, &len),
	        CUBEID_OK);
	/* It re-initialised the module, and the token was still gone. */
	ck_assert_int_ge(mock_init_calls(), 1);
	cubeid_token_health(tok, &h);
	ck_assert(h.down);
	ck_assert(h.retry_in > 0 && h.retry_in <= P11_RECOVER_MAX_MS / 1000.0);
	/* Inside the backoff, a call fails at once without a re-init. */
	inits = mock_init_calls();
	len = sizeof(sig);
	(void)cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, (const uint8_t *)"x", 1, sig, &len);
	ck_assert_int_eq(mock_init_calls(), inits);
	/* Back: the next call after the backoff re-initialises and signs. */
	mock_token_back();
	t0 = p11_mono();
	for (i = 0; i < 200 && r != CUBEID_OK; i++) {
		len = sizeof(sig);
		r = cubeid_key_sign(k, CUBEID_SIG_ECDSA_SHA256, (const uint8_t *)"x", 1, sig, &len);
		if (r != CUBEID_OK)
			usleep(50 * 1000);
	}
	t = p11_mono() - t0;
	ck_assert_msg(r == CUBEID_OK, "still failing: %s", cubeid_strerror(r));
	ck_assert_msg(t < 10, "recovered after %.2f s", t);
	ck_assert_int_gt(mock_init_calls(), inits);
	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_ECDSA_SHA256), CUBEID_OK);
	cubeid_token_health(tok, &h);
	ck_assert(!h.down);
	ck_assert_uint_ge(h.recoveries, 1);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}

/* Signers on several threads while the token goes and comes back: the
 * re-init drains them out of the module before C_Finalize (SoftHSM2
 * crashes when finalised under a thread), and they all sign again. */
struct signer {
	cubeid_key *k;
	volatile int *stop;
	int ok_after; /* signatures that worked after the token came back */
	volatile int *back;
};

static void *
signer_run(void *arg)
{
	struct signer *sg = arg;
	uint8_t sig[64];
	size_t len;

	while (!*sg->stop) {
		len = sizeof(sig);
		if (cubeid_key_sign(sg->k, CUBEID_SIG_ECDSA_SHA256, (const uint8_t *)"x", 1, sig,
		                    &len) == CUBEID_OK &&
		    *sg->back)
			sg->ok_after++;
		usleep(5 * 1000);
	}
	return NULL;
}

START_TEST(test_outage_under_concurrent_signers_recovers)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256);
	struct signer sg[4];
	pthread_t th_[4];
	volatile int stop = 0, back = 0;
	struct cubeid_token_health h;
	int i;

	mock_reset();
	for (i = 0; i < 4; i++) {
		sg[i] = (struct signer){k, &stop, 0, &back};
		ck_assert_int_eq(pthread_create(&th_[i], NULL, signer_run, &sg[i]), 0);
	}
	usleep(300 * 1000);
	mock_outage(CKR_DEVICE_REMOVED);
	usleep(1500 * 1000);
	mock_token_back();
	back = 1;
	usleep(6000 * 1000); /* the backoff is at most 4 s */
	stop = 1;
	for (i = 0; i < 4; i++)
		pthread_join(th_[i], NULL);
	for (i = 0; i < 4; i++)
		ck_assert_msg(sg[i].ok_after > 0, "signer %d never signed again", i);
	cubeid_token_health(tok, &h);
	ck_assert(!h.down);
	ck_assert_uint_ge(h.recoveries, 1);
	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_ECDSA_SHA256), CUBEID_OK);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}
END_TEST

START_TEST(test_outage_device_removed_recovers_after_reinit)
{
	outage_then_recovers(CKR_DEVICE_REMOVED);
}
END_TEST

START_TEST(test_outage_session_invalid_recovers_after_reinit)
{
	outage_then_recovers(CKR_SESSION_HANDLE_INVALID);
}
END_TEST

START_TEST(test_outage_token_not_present_recovers_after_reinit)
{
	outage_then_recovers(CKR_TOKEN_NOT_PRESENT);
}
END_TEST

START_TEST(test_device_removed_once_reopens_and_signs)
{
	fails_once_then_recovers(CKR_DEVICE_REMOVED);
}
END_TEST

START_TEST(test_device_removed_always_is_device_error_after_bounded_retries)
{
	fails_always_bounded(CKR_DEVICE_REMOVED, CUBEID_ERR_P11_DEVICE);
}
END_TEST

START_TEST(test_session_invalid_once_reopens_and_signs)
{
	fails_once_then_recovers(CKR_SESSION_HANDLE_INVALID);
}
END_TEST

START_TEST(test_session_invalid_always_is_session_error_after_bounded_retries)
{
	fails_always_bounded(CKR_SESSION_HANDLE_INVALID, CUBEID_ERR_P11_SESSION);
}
END_TEST

/* A fault that no retry can fix is reported at once, not retried. */
START_TEST(test_function_failed_is_not_retried)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256);

	mock_reset();
	mock_fail_sign(1, CKR_FUNCTION_FAILED);
	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_ECDSA_SHA256), CUBEID_ERR_P11_GENERAL);
	ck_assert_int_eq(mock_sign_calls(), 1);
	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_ECDSA_SHA256), CUBEID_OK);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}
END_TEST

/* ---- a mechanism the token lacks ---- */

START_TEST(test_hidden_pss_is_mechanism_error_and_rs256_still_works)
{
	cubeid_key *k;
	char *log;
	int r;

	/* Mechanisms are read when the token opens: hide PSS, then reopen. */
	mock_hide_mechanism(CKM_RSA_PKCS_PSS);
	cubeid_token_free(tok);
	tok = NULL;
	open_through_mock();
	ck_assert(!cubeid_token_has_mechanism(tok, CKM_RSA_PKCS_PSS));
	ck_assert(cubeid_token_has_mechanism(tok, CKM_RSA_PKCS));
	k = gen(CUBEID_KEY_RSA_2048);
	mock_reset();
	mock_hide_mechanism(CKM_RSA_PKCS_PSS);
	log = capture_stderr(sign_verify, k, CUBEID_SIG_RSA_PSS_SHA256, &r);
	ck_assert_int_eq(r, CUBEID_ERR_P11_MECHANISM);
	ck_assert_msg(strstr(log, "CKM_RSA_PKCS_PSS") != NULL && strstr(log, th.label) != NULL,
	              "no clear log line naming the token and mechanism: '%s'", log);
	free(log);
	/* Nothing was sent to the token for it. */
	ck_assert_int_eq(mock_sign_calls(), 0);
	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_RSA_PKCS1_SHA256), CUBEID_OK);
	ck_assert_int_eq(mock_sign_calls(), 1);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}
END_TEST

/* ---- the PIN ---- */

static char *
write_pin_file(const char *pin)
{
	char *path;
	FILE *f;

	ck_assert_int_ge(asprintf(&path, "%s/other.pin", th.dir), 0);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(pin, f);
	fclose(f);
	chmod(path, 0600);
	return path;
}

START_TEST(test_wrong_pin_at_open_logs_in_once)
{
	struct cubeid_token_opts o = {0};
	cubeid_token *t2 = NULL;
	char *path = write_pin_file("not-the-pin\n");

	/* Login is per process: let go of our logged-in token first. */
	cubeid_token_free(tok);
	tok = NULL;
	mock_reset();
	o.module_path = mock_path;
	o.pin_file = path;
	ck_assert_int_eq(cubeid_token_open(th.uri, &o, &t2), CUBEID_ERR_P11_PIN_INCORRECT);
	ck_assert_ptr_null(t2);
	ck_assert_int_eq(mock_login_calls(), 1);
	free(path);
}
END_TEST

/* The token starts rejecting our PIN while we run (it was changed under us
 * and the login was lost): one C_Login, then never again. */
START_TEST(test_pin_rejected_later_is_never_retried)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256);
	CK_FUNCTION_LIST_PTR f = tok->f;
	CK_SESSION_HANDLE s;
	char pin[CUBEID_PIN_MAX + 1] = "";
	const char *newpin = "a-new-pin-1234";
	cubeid_key *found = NULL;
	FILE *pf;
	int r;

	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_ECDSA_SHA256), CUBEID_OK);
	pf = fopen(th.pin_file, "r");
	ck_assert_ptr_nonnull(fgets(pin, sizeof(pin), pf));
	fclose(pf);
	/* Someone else changes the PIN and closes every session: the token
	 * forgets our login. */
	ck_assert_int_eq(
	        f->C_OpenSession(tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
	        CKR_OK);
	ck_assert_int_eq(f->C_SetPIN(s, (CK_UTF8CHAR_PTR)pin, strlen(pin), (CK_UTF8CHAR_PTR)newpin,
	                             strlen(newpin)),
	                 CKR_OK);
	ck_assert_int_eq(f->C_CloseAllSessions(tok->slot), CKR_OK);
	explicit_bzero(pin, sizeof(pin));
	mock_reset();

	r = sign_verify(k, CUBEID_SIG_ECDSA_SHA256);
	ck_assert_msg(r == CUBEID_ERR_P11_PIN_INCORRECT, "sign: %s", cubeid_strerror(r));
	ck_assert_int_eq(mock_login_calls(), 1);
	/* Later operations fail the same way without trying the PIN again. */
	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_ECDSA_SHA256), CUBEID_ERR_P11_PIN_INCORRECT);
	ck_assert_int_eq(cubeid_key_find(tok, cubeid_key_label(k), NULL, 0, &found),
	                 CUBEID_ERR_P11_PIN_INCORRECT);
	ck_assert_ptr_null(found);
	ck_assert_int_eq(mock_login_calls(), 1);
	ck_assert_int_eq(mock_sign_calls(), 0);
	cubeid_key_free(k);
}
END_TEST

/* A logout from outside (CKR_USER_NOT_LOGGED_IN) is fixed by one login. */
START_TEST(test_lost_login_logs_in_once_and_signs)
{
	cubeid_key *k = gen(CUBEID_KEY_EC_P256);
	CK_SESSION_HANDLE s;

	ck_assert_int_eq(p11_session_get(tok, &s), CUBEID_OK);
	ck_assert_int_eq(tok->f->C_Logout(s), CKR_OK);
	p11_session_put(tok, s, false);
	mock_reset();
	ck_assert_int_eq(sign_verify(k, CUBEID_SIG_ECDSA_SHA256), CUBEID_OK);
	ck_assert_int_eq(mock_login_calls(), 1);
	cubeid_key_delete(k);
	cubeid_key_free(k);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("pkcs11-faults");
	TCase *sess = tcase_create("sessions"), *mech = tcase_create("mechanisms"),
	      *pin = tcase_create("pin");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(sess, setup, teardown);
	tcase_add_checked_fixture(mech, setup, teardown);
	tcase_add_checked_fixture(pin, setup, teardown);
	tcase_add_test(sess, test_device_removed_once_reopens_and_signs);
	tcase_add_test(sess, test_device_removed_always_is_device_error_after_bounded_retries);
	tcase_add_test(sess, test_session_invalid_once_reopens_and_signs);
	tcase_add_test(sess, test_session_invalid_always_is_session_error_after_bounded_retries);
	tcase_add_test(sess, test_function_failed_is_not_retried);
	tcase_add_test(sess, test_outage_device_removed_recovers_after_reinit);
	tcase_add_test(sess, test_outage_session_invalid_recovers_after_reinit);
	tcase_add_test(sess, test_outage_token_not_present_recovers_after_reinit);
	tcase_add_test(sess, test_outage_under_concurrent_signers_recovers);
	tcase_add_test(mech, test_hidden_pss_is_mechanism_error_and_rs256_still_works);
	tcase_add_test(pin, test_wrong_pin_at_open_logs_in_once);
	tcase_add_test(pin, test_pin_rejected_later_is_never_retried);
	tcase_add_test(pin, test_lost_login_logs_in_once_and_signs);
	suite_add_tcase(s, sess);
	suite_add_tcase(s, mech);
	suite_add_tcase(s, pin);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
