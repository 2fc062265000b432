#!/bin/sh
# A smoke run of bench/grpc-abuse: half a second a phase, two attackers; it
# proves the bench builds and that the agent serves its client in every
# phase and exits 0 after.  The numbers mean nothing here: `make bench`.
srcdir=$(cd "$(dirname "$0")/.." && pwd)
exec bash "$srcdir/bench/run-grpc-abuse.sh" --smoke
