# tests/lib/free-port.sh: free_port prints a loopback TCP port that nobody
# listens on, for a server a test starts.  The port comes from below the
# kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
# default): a port inside it can be taken between this check and the
# server's bind by any outgoing connection's local end (a busy suite makes
# thousands), which is how Keycloak once failed with "Address already in
# use" on its management port.  Source it; it defines only free_port.
free_port() {
	local lo=32768 hi p span
	read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	# [10000, lo) when the ephemeral range leaves room below it, else
	# (hi, 65535]
	if [ "$lo" -gt 11000 ]; then
		span=$((lo - 10000))
		base=10000
	else
		span=$((65535 - hi))
		base=$((hi + 1))
	fi
	for _ in $(seq 1 200); do
		p=$((base + (RANDOM * 32768 + RANDOM) % span))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
