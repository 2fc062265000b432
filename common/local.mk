libcubeid_la_SOURCES += common/error.c common/log.c
cubeidinclude_HEADERS += include/cubeid/error.h include/cubeid/log.h

# gRPC framing shared by the agent's server and the Workload API client, and
# the client itself (include/cubeid/workloadapi.h).
libcubeid_la_SOURCES += common/grpc-frame.c common/workloadapi-client.c common/workloadapi.c
noinst_HEADERS += common/grpc-frame.h
cubeidinclude_HEADERS += include/cubeid/workloadapi.h
