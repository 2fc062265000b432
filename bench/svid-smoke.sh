#!/bin/sh
# A smoke run of bench/svid: a handful of mints and verifications per case,
# each checked, and no thresholds.  It proves the bench still builds and
# runs; the numbers it prints mean nothing.  Run `make bench` for those.
prog=${CUBEID_BUILDDIR:-.}/bench/svid
exec "$prog" --smoke
