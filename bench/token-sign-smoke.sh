#!/bin/sh
# A smoke run of bench/token-sign: a handful of signatures per case, checked
# with OpenSSL, and no thresholds.  It proves the bench still builds and
# runs; the numbers it prints mean nothing.  Run `make bench` for those.
prog=${CUBEID_BUILDDIR:-.}/bench/token-sign
exec "$prog" --smoke
