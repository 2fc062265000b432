# contrib/systemd: the agent's units (issue 8).  The service is generated
# from cubeid-agent.service.in with the configured sbindir and sysconfdir;
# they install to $(systemdsystemunitdir) (--with-systemdsystemunitdir,
# default PREFIX/lib/systemd/system), the sysusers file to $(sysusersdir)
# (default PREFIX/lib/sysusers.d), and the TPM drop-in to
# $(pkgdatadir)/systemd for the admin to enable.
SYSTEMD_SRC = contrib/systemd/cubeid-agent.service.in contrib/systemd/cubeid-agent.socket \
	contrib/systemd/tpm.conf contrib/systemd/sysusers.d/cubeid.conf
EXTRA_DIST += $(SYSTEMD_SRC)
CLEANFILES += contrib/systemd/cubeid-agent.service

contrib/systemd/cubeid-agent.service: $(srcdir)/contrib/systemd/cubeid-agent.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) contrib/systemd && \
		sed -e 's|@sbindir[@]|$(sbindir)|g' -e 's|@sysconfdir[@]|$(sysconfdir)|g' \
			$(srcdir)/contrib/systemd/cubeid-agent.service.in > $@.tmp && \
		mv $@.tmp $@

noinst_DATA = contrib/systemd/cubeid-agent.service
if HAVE_SYSTEMD_UNITDIR
systemdsystemunit_DATA = contrib/systemd/cubeid-agent.service contrib/systemd/cubeid-agent.socket
endif
if HAVE_SYSUSERSDIR
sysusers_DATA = contrib/systemd/sysusers.d/cubeid.conf
endif
cubeidsystemddir = $(pkgdatadir)/systemd
cubeidsystemd_DATA = contrib/systemd/tpm.conf

# After `make install` (distcheck runs this too): everything a node needs
# is where it belongs, and the installed service runs the installed agent.
installcheck-local:
	@set -e; d='$(DESTDIR)'; \
	for f in '$(sbindir)/cubeid-agent' '$(bindir)/cubeid' '$(pkgconfigdir)/libcubeid.pc' \
		'$(mandir)/man1/cubeid.1' '$(mandir)/man8/cubeid-agent.8' \
		'$(mandir)/man5/cubeid.conf.5' '$(mandir)/man5/cubeid-entries.5' \
		'$(cubeidsystemddir)/tpm.conf'; do \
		test -f "$$d$$f" || { echo "installcheck: missing $$d$$f"; exit 1; }; \
	done; \
	if test -n '$(systemdsystemunitdir)'; then \
		for u in cubeid-agent.service cubeid-agent.socket; do \
			test -f "$$d$(systemdsystemunitdir)/$$u" || { echo "installcheck: missing $$u"; exit 1; }; \
		done; \
		grep -qx 'ExecStart=$(sbindir)/cubeid-agent --config $(sysconfdir)/cubeid/config.yaml .*' \
			"$$d$(systemdsystemunitdir)/cubeid-agent.service" || \
			{ echo "installcheck: ExecStart does not run $(sbindir)/cubeid-agent with $(sysconfdir)/cubeid/config.yaml"; exit 1; }; \
	fi; \
	echo "installcheck: binaries, library .pc, man pages and units installed"

# The units: syntax (systemd-analyze verify), the exposure score of
# `systemd-analyze security --offline=true` (at most 2.0, with and without
# the TPM drop-in), and socket activation + sd_notify READY/WATCHDOG with
# the real agent under systemd-socket-activate.
TESTS += tests/systemd-units.sh
EXTRA_DIST += tests/systemd-units.sh

# ./configure --prefix=P installs the units (and nothing else) under P, and
# the agent reads its defaults under sysconfdir.
TESTS += tests/install-prefix.sh
EXTRA_DIST += tests/install-prefix.sh
