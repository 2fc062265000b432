// Command cubeid-interop checks cubeid's SPIFFE output with go-spiffe v2, the
// reference SPIFFE library, and produces SVIDs that cubeid must accept.
//
// It is a test tool: tests/lib/go-peers.sh builds it from this directory with
// dependencies from the Go module proxy.  Exit status: 0 accepted / done,
// 1 rejected or failed (go-spiffe's error text on stderr), 2 usage error.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

const usageText = `usage: cubeid-interop COMMAND [flags]

Verify with go-spiffe v2:
  x509-verify --svid svid.pem --bundle bundle.pem [--td TD] [--bundle-spiffe F]
  jwt-verify  (--token T | --token-file F) (--bundle jwks.json | --bundle-spiffe bundle.json)
              --aud A [--aud B] --td TD

Mint (plain Go crypto), for cubeid's verifiers to accept or reject:
  x509-mint --td TD --id SPIFFEID --out DIR [--key ec256|ec384|rsa2048]
            [--ttl 1h] [--dns NAME] [--defect KIND]
  jwt-mint  --td TD --id SPIFFEID --aud A --alg ES256|ES384|RS256|PS256 --out DIR
            [--ttl 5m] [--defect KIND]

Workload API client (go-spiffe workloadapi; --socket or SPIFFE_ENDPOINT_SOCKET):
  workload x509 [--out DIR]       workload jwt --aud A [--subject ID]
  workload bundles                workload validate --token T --aud A
  workload validate-local --token T --aud A   (go-spiffe verifies with FetchJWTBundles)
  workload watch-x509 --rotations N --timeout 60s
  workload probe [--no-header]    raw FetchX509SVID; prints the gRPC code
`

// errUsage marks command-line mistakes (exit 2).
var errUsage = errors.New("usage error")

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

// parseFlags parses args and rejects stray positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}

// need reports the first empty required flag.
func need(cmd string, kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			fmt.Fprintf(os.Stderr, "%s: --%s is required\n", cmd, kv[i])
			return errUsage
		}
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usageText)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "x509-verify":
		return cmdX509Verify(rest)
	case "jwt-verify":
		return cmdJWTVerify(rest)
	case "x509-mint":
		return cmdX509Mint(rest)
	case "jwt-mint":
		return cmdJWTMint(rest)
	case "workload":
		return cmdWorkload(rest)
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usageText)
		return nil
	}
	fmt.Fprintf(os.Stderr, "unknown command %q\n%s", cmd, usageText)
	return errUsage
}

func main() {
	err := run(os.Args[1:])
	switch {
	case err == nil:
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "cubeid-interop: %v\n", err)
		os.Exit(1)
	}
}
