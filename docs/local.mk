# docs: the design and subsystem pages, shipped in the tarball.  Every
# Markdown page under docs/ is listed here; tests/docs-dist.sh checks that.
EXTRA_DIST += \
	docs/design.md \
	docs/pkcs11.md \
	docs/pkcs11-tpm-notes.md \
	docs/config.md \
	docs/entries.md \
	docs/mtls.md

TESTS += tests/docs-dist.sh
EXTRA_DIST += tests/docs-dist.sh

# PicoD tokens (issue 6)
EXTRA_DIST += docs/picod.md
