# agent/picod.mk (included by agent/local.mk).  PicoD tokens (issue 6): the
# cubeid.picod.v1.PicoD service on the agent's
# socket (agent/picod.proto, compiled by protoc-c into libcubeid like the
# Workload API), its handlers in the agent, and `cubeid picod`.
EXTRA_DIST += agent/picod.proto
PICOD_PROTO_GEN = agent/picod.pb-c.c agent/picod.pb-c.h
BUILT_SOURCES += $(PICOD_PROTO_GEN)
CLEANFILES += $(PICOD_PROTO_GEN)
nodist_libcubeid_la_SOURCES += $(PICOD_PROTO_GEN)
agent/picod.pb-c.h: agent/picod.pb-c.c
agent/picod.pb-c.c: $(srcdir)/agent/picod.proto
	$(AM_V_GEN)$(MKDIR_P) agent && \
		$(PROTOC_C) -I$(srcdir)/agent --c_out=agent $(srcdir)/agent/picod.proto
libagent_la_SOURCES += agent/picod-service.c
agent_cubeid_SOURCES += agent/tool-picod.c agent/tool-picod-key.c agent/tool-picod-key.h
TESTS += tests/picod-agent.sh
EXTRA_DIST += tests/picod-agent.sh

# Against AgentCube's real PicoD (tests/picod-peer, built from the Go module
# proxy by tests/lib/go-peers.sh), or the golang-jwt fallback verifier.
TESTS += tests/picod-real.sh
EXTRA_DIST += tests/picod-real.sh tests/picod-peer/go.mod tests/picod-peer/go.sum \
	tests/picod-peer/main.go tests/picod-jwtcheck/go.mod tests/picod-jwtcheck/go.sum \
	tests/picod-jwtcheck/main.go
