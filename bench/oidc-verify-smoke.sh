#!/bin/sh
# A smoke run of bench/oidc-verify: one short round per algorithm, no
# thresholds (the ratios it prints mean nothing at this length).  It proves
# the bench builds, and that both sides verify.  `make bench` for the numbers.
exec "${CUBEID_BUILDDIR:-.}/bench/oidc-verify" --smoke
