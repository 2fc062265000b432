libcubeid_la_SOURCES += common/error.c
cubeidinclude_HEADERS += include/cubeid/error.h
