# pkcs11/: the token layer.
libcubeid_la_SOURCES += \
	pkcs11/p11-internal.h \
	pkcs11/p11-module.c
cubeidinclude_HEADERS += include/cubeid/token.h
