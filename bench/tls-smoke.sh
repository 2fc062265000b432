#!/bin/sh
# A smoke run of bench/tls: a handful of handshakes (loader and plain
# OpenSSL) and reloads, each checked, and no thresholds.  It proves the
# bench still builds and runs; the numbers it prints mean nothing.  Run
# `make bench-tls` for those.
prog=${CUBEID_BUILDDIR:-.}/bench/tls
exec "$prog" --smoke
