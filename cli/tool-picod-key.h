/*
 * `cubeid picod wrapping-key | cluster-key ...` (cli/tool-picod-key.c):
 * the single cluster PicoD key, copied between tokens only wrapped.  The
 * entries of cli/tool-picod.c's table.
 */
#ifndef CUBEID_TOOL_PICOD_KEY_H
#define CUBEID_TOOL_PICOD_KEY_H

#include "cli/tool.h"

extern const struct tool_opt tool_picod_wrapping_key_opts[];
extern const struct tool_opt tool_picod_cluster_create_opts[];
extern const struct tool_opt tool_picod_export_wrapped_opts[];
extern const struct tool_opt tool_picod_import_wrapped_opts[];
int tool_picod_wrapping_key(struct tool_ctx *c);
int tool_picod_cluster_create(struct tool_ctx *c);
int tool_picod_export_wrapped(struct tool_ctx *c);
int tool_picod_import_wrapped(struct tool_ctx *c);

#define TOOL_PICOD_KEY_CMDS                                                                        \
	{"wrapping-key",                                                                           \
	 "[--label LABEL] [--out FILE]",                                                           \
	 "on a node: make its key for receiving the cluster PicoD key, print its public key",      \
	 "Generates an RSA-3072 key pair in this node's token whose private half can only\n"       \
	 "unwrap (CKA_UNWRAP; sensitive, never extractable), or reuses it, and prints\n"           \
	 "its public key (PEM) for 'picod cluster-key export-wrapped --to'.  Only for\n"           \
	 "today's single-key PicoD; see docs/cluster.md.",                                         \
	 tool_picod_wrapping_key_opts,                                                             \
	 0,                                                                                        \
	 tool_picod_wrapping_key},                                                                 \
	        {"cluster-key create",                                                             \
	         "[--label LABEL] [--out FILE]",                                                   \
	         "in the enrolment token: generate the one cluster PicoD key",                     \
	         "Generates an RSA-2048 (RS256) key pair in the enrolment token: sensitive (it\n"  \
	         "is never readable in clear) and extractable only by wrapping.  Prints its\n"     \
	         "public key (PEM): the value of PICOD_AUTH_PUBLIC_KEY for every sandbox.",        \
	         tool_picod_cluster_create_opts,                                                   \
	         0,                                                                                \
	         tool_picod_cluster_create},                                                       \
	        {"cluster-key export-wrapped",                                                     \
	         "--to WRAPPING-KEY.pem [--out FILE] [--label LABEL]",                             \
	         "wrap the cluster PicoD key for one node, inside the enrolment token",            \
	         "Inside the token, a fresh AES-256 key wraps the cluster key (AES key wrap\n"     \
	         "with padding) and the node's wrapping public key wraps the AES key "             \
	         "(RSA-OAEP);\n"                                                                   \
	         "the AES key is destroyed.  The output (JSON) is useless without that node's\n"   \
	         "token.",                                                                         \
	         tool_picod_export_wrapped_opts,                                                   \
	         0,                                                                                \
	         tool_picod_export_wrapped},                                                       \
	{                                                                                          \
		"cluster-key import-wrapped",                                                      \
		        "FILE [--wrapping-label LABEL] [--prepublish DURATION]",                   \
		        "on a node: unwrap the cluster PicoD key into this token and sign with "   \
		        "it",                                                                      \
		        "Unwraps the key inside this node's token with its wrapping key: it "      \
		        "arrives\n"                                                                \
		        "as a persistent private key, sensitive and non-extractable, checked "     \
		        "against\n"                                                                \
		        "the public key that came with it.  It becomes the signer of the agent's " \
		        "PicoD\n"                                                                  \
		        "key state (STATE-DIR/picod), at once or after --prepublish; send the "    \
		        "agent\n"                                                                  \
		        "SIGHUP.  Tokens that cannot unwrap (tpm2-pkcs11) say so: such nodes use " \
		        "the\n"                                                                    \
		        "JWKS-aware verifier (docs/cluster.md).",                                  \
		        tool_picod_import_wrapped_opts, 1, tool_picod_import_wrapped               \
	}

#endif
