libcubeid_la_SOURCES += common/error.c common/log.c
cubeidinclude_HEADERS += include/cubeid/error.h include/cubeid/log.h
