# docs: the design and subsystem pages, shipped in the tarball.  Every
# Markdown page under docs/ is listed here; tests/docs-dist.sh checks that.
EXTRA_DIST += \
	docs/design.md \
	docs/performance.md \
	docs/pkcs11.md \
	docs/pkcs11-tpm-notes.md \
	docs/config.md \
	docs/entries.md \
	docs/mtls.md \
	docs/delivery.md

TESTS += tests/docs-dist.sh
EXTRA_DIST += tests/docs-dist.sh

# PicoD tokens (issue 6)
EXTRA_DIST += docs/picod.md

# Guides for operators and users (issue 8); tests/docs-errors.sh checks that
# troubleshooting.md covers every error code and that every page is linked
# from README.md.
EXTRA_DIST += docs/install.md docs/tpm.md docs/softhsm.md docs/systemd.md docs/kubernetes.md \
	docs/operations.md docs/troubleshooting.md docs/spire-mode.md docs/sdk.md docs/federation.md \
	docs/workload-api.md
TESTS += tests/docs-errors.sh
EXTRA_DIST += tests/docs-errors.sh
# Threats, the tests that prove them, and the measurements
EXTRA_DIST += docs/hardening.md
# Trust across nodes (issue 9)
EXTRA_DIST += docs/cluster.md

# Keycloak (issue 7)
EXTRA_DIST += docs/keycloak.md

# The Python SDK auth package (issue 20)
EXTRA_DIST += docs/sdk-python.md

# The end-to-end chain (issue 21)
EXTRA_DIST += docs/e2e.md
