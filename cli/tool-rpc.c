/*
 * The CLI's connection to the agent, shared by the groups that call it
 * (cubeid svid|jwt|bundle|status in tool-agent.c, cubeid picod): the
 * Workload API client's options from --socket, and the error line for a
 * failed call, with the gRPC code by name.
 */
#include "config.h"

#include "cli/tool.h"

#include <cubeid/workloadapi.h>

#include <stdlib.h>
#include <string.h>

static const char *
grpc_code_name(int code)
{
	static const char *const names[] = {
	        "OK",
	        "Canceled",
	        "Unknown",
	        "InvalidArgument",
	        "DeadlineExceeded",
	        "NotFound",
	        "AlreadyExists",
	        "PermissionDenied",
	        "ResourceExhausted",
	        "FailedPrecondition",
	        "Aborted",
	        "OutOfRange",
	        "Unimplemented",
	        "Internal",
	        "Unavailable",
	        "DataLoss",
	        "Unauthenticated",
	};

	if (code >= 0 && (size_t)code < sizeof(names) / sizeof(names[0]))
		return names[code];
	return "none";
}

int
tool_rpc_fail(int rc, const char *what, const struct cubeid_wl_status *st)
{
	if (st->code > 0)
		tool_err("%s: code=%s: %s", what, grpc_code_name(st->code), st->message);
	else
		tool_err("%s: %s%s%s", what, cubeid_strerror(rc), st->message[0] ? ": " : "",
		         st->message);
	return tool_exit_code(rc);
}

void
tool_wl_opts(const struct tool_ctx *c, struct cubeid_wl_opts *o)
{
	const char *env = getenv("SPIFFE_ENDPOINT_SOCKET");

	memset(o, 0, sizeof(*o));
	/* --socket, $SPIFFE_ENDPOINT_SOCKET (the client reads it), the config
	 * file's socket_path or the agent's default */
	o->socket = tool_opt(c, "socket");
	if (o->socket == NULL && (env == NULL || *env == '\0'))
		o->socket = c->socket != NULL ? c->socket : TOOL_SOCKET_DEFAULT;
	for (const struct tool_opt *opt = c->cmd->opts; opt != NULL && opt->name != NULL; opt++)
		if (strcmp(opt->name, "no-security-header") == 0)
			o->no_security_header = tool_flag(c, "no-security-header");
}
