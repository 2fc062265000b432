# tls/: the libcubeid TLS loader (include/cubeid/tls.h): OpenSSL contexts
# whose certificates reload without downtime from files, a PKCS#11 key or
# a Workload API socket, and that authorize peers by SPIFFE ID.  In
# libcubeid; uses common/, pkcs11/ and spiffe/ (docs/design.md, "Layout").
libcubeid_internal_la_SOURCES += \
	tls/tls-internal.h \
	tls/tls-state.c \
	tls/tls-allow.c \
	tls/tls-loader.c \
	tls/tls-socket.c \
	tls/tls-ctx.c \
	tls/tls-flags.c
cubeidinclude_HEADERS += include/cubeid/tls.h
