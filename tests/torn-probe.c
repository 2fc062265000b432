/*
 * torn-probe: a reader that loops opening a certificate file and then its
 * key file, and checks that they match (the certificate's public key is
 * the key's), while a writer rotates them.  It counts
 *   mismatches  both parsed, but the key is not the certificate's;
 *   torn        a file was empty, truncated or not PEM (a torn write);
 *   missing     a file could not be opened;
 * and the distinct certificates it saw (rotations observed).
 *
 *   torn-probe [--snapshot] [--seconds N] [--stop-file F] DIR CERT KEY
 *
 * Default: open DIR/CERT, then DIR/KEY, by their stable names (each open
 * resolves a ..data symlink on its own).  --snapshot: open DIR/..data once
 * as a directory (or DIR when there is no ..data) and open both files
 * relative to it, as a reader of an AtomicWriter layout should.
 *
 * Prints one line: "iterations=... rotations=... mismatches=... torn=...
 * missing=...".  Exit 0 (the caller judges the counts), 2 on bad usage.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#define FILE_MAX (256 * 1024)

static ssize_t
slurp_at(int dfd, const char *name, char *buf, size_t size)
{
	ssize_t n, total = 0;
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((size_t)total < size && (n = read(fd, buf + total, size - (size_t)total)) > 0)
		total += n;
	close(fd);
	return total;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	static char cbuf[FILE_MAX], kbuf[FILE_MAX];
	unsigned char last[SHA256_DIGEST_LENGTH] = {0}, cur[SHA256_DIGEST_LENGTH];
	unsigned long iter = 0, rot = 0, mism = 0, torn = 0, missing = 0;
	const char *stop_file = NULL, *dir, *cert, *key;
	double seconds = 10, end;
	bool snapshot = false, have_last = false;
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--snapshot") == 0)
			snapshot = true;
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--stop-file") == 0 && i + 1 < argc)
			stop_file = argv[++i];
		else
			break;
	}
	if (argc - i != 3) {
		fprintf(stderr, "usage: torn-probe [--snapshot] [--seconds N] [--stop-file F] DIR "
		                "CERT KEY\n");
		return 2;
	}
	dir = argv[i];
	cert = argv[i + 1];
	key = argv[i + 2];
	end = now_s() + seconds;
	while (now_s() < end && (stop_file == NULL || access(stop_file, F_OK) != 0)) {
		ssize_t cl, kl;
		int dfd, base;
		BIO *b;
		X509 *x = NULL;
		EVP_PKEY *k = NULL;

		iter++;
		if ((base = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			missing++;
			continue;
		}
		dfd = base;
		if (snapshot) {
			int d = openat(base, "..data", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (d >= 0)
				dfd = d;
		}
		cl = slurp_at(dfd, cert, cbuf, sizeof(cbuf));
		kl = slurp_at(dfd, key, kbuf, sizeof(kbuf));
		if (dfd != base)
			close(dfd);
		close(base);
		if (cl < 0 || kl < 0) {
			missing++;
			continue;
		}
		if ((b = BIO_new_mem_buf(cbuf, (int)cl)) != NULL) {
			x = PEM_read_bio_X509(b, NULL, NULL, NULL);
			BIO_free(b);
		}
		if ((b = BIO_new_mem_buf(kbuf, (int)kl)) != NULL) {
			k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
			BIO_free(b);
		}
		if (x == NULL || k == NULL) {
			torn++;
		} else {
			EVP_PKEY *pub = X509_get0_pubkey(x);
			unsigned int len = 0;

			if (pub == NULL || EVP_PKEY_eq(pub, k) != 1)
				mism++;
			if (X509_digest(x, EVP_sha256(), cur, &len) == 1) {
				if (have_last && memcmp(cur, last, sizeof(cur)) != 0)
					rot++;
				memcpy(last, cur, sizeof(cur));
				have_last = true;
			}
		}
		X509_free(x);
		EVP_PKEY_free(k);
	}
	printf("iterations=%lu rotations=%lu mismatches=%lu torn=%lu missing=%lu\n", iter, rot,
	       mism, torn, missing);
	return 0;
}
