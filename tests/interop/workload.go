package main

// workload: go-spiffe's workloadapi client against an agent's socket (cubeid
// or SPIRE).  Errors name the gRPC status code ("code=PermissionDenied") so
// that tests can match on it.

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	workload "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type workloadOpts struct {
	socket  string
	timeout time.Duration
}

func (o *workloadOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.socket, "socket", "", "unix:///path (default: $SPIFFE_ENDPOINT_SOCKET)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "give up after this long")
}

func (o *workloadOpts) addr() (string, error) {
	a := o.socket
	if a == "" {
		a = os.Getenv("SPIFFE_ENDPOINT_SOCKET")
	}
	if a == "" {
		fmt.Fprintln(os.Stderr, "workload: give --socket or set SPIFFE_ENDPOINT_SOCKET")
		return "", errUsage
	}
	if strings.HasPrefix(a, "/") {
		a = "unix://" + a
	}
	return a, nil
}

func (o *workloadOpts) client(ctx context.Context) (*workloadapi.Client, error) {
	a, err := o.addr()
	if err != nil {
		return nil, err
	}
	return workloadapi.New(ctx, workloadapi.WithAddr(a))
}

// grpcErr prefixes the gRPC status code of err.
func grpcErr(what string, err error) error {
	if err == nil {
		return nil
	}
	// FromError looks through wrapping.
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: code=%s: %w", what, st.Code(), err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func cmdWorkload(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usageText)
		return errUsage
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "x509":
		return wlX509(rest)
	case "jwt":
		return wlJWT(rest)
	case "bundles":
		return wlBundles(rest)
	case "validate":
		return wlValidate(rest)
	case "validate-local":
		return wlValidateLocal(rest)
	case "watch-x509":
		return wlWatchX509(rest)
	case "probe":
		return wlProbe(rest)
	}
	fmt.Fprintf(os.Stderr, "workload: unknown subcommand %q\n", sub)
	return errUsage
}

func svidSummary(s *x509svid.SVID) map[string]any {
	leaf := s.Certificates[0]
	return map[string]any{
		"spiffe_id":  s.ID.String(),
		"hint":       s.Hint,
		"serial":     leaf.SerialNumber.Text(16),
		"not_before": leaf.NotBefore.UTC().Format(time.RFC3339),
		"not_after":  leaf.NotAfter.UTC().Format(time.RFC3339),
		"chain_len":  len(s.Certificates),
	}
}

func wlX509(args []string) error {
	var o workloadOpts
	fs := newFlagSet("workload x509")
	o.register(fs)
	outDir := fs.String("out", "", "also write svid.pem, svid_key.pem, bundle.pem here")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	c, err := o.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	xc, err := c.FetchX509Context(ctx)
	if err != nil {
		return grpcErr("FetchX509SVID", err)
	}
	if len(xc.SVIDs) == 0 {
		return errors.New("FetchX509SVID: no SVID in the response")
	}
	var svids []map[string]any
	for _, s := range xc.SVIDs {
		// Each SVID must verify against the bundles sent with it.
		if _, _, err := x509svid.Verify(s.Certificates, xc.Bundles); err != nil {
			return fmt.Errorf("SVID %s does not verify against the served bundle: %w", s.ID, err)
		}
		svids = append(svids, svidSummary(s))
	}
	if *outDir != "" {
		s := xc.DefaultSVID()
		certs, key, err := s.Marshal()
		if err != nil {
			return err
		}
		b, err := xc.Bundles.GetX509BundleForTrustDomain(s.ID.TrustDomain())
		if err != nil {
			return err
		}
		bp, err := b.Marshal()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*outDir, 0o700); err != nil {
			return err
		}
		for name, data := range map[string][]byte{"svid.pem": certs, "svid_key.pem": key, "bundle.pem": bp} {
			if err := os.WriteFile(filepath.Join(*outDir, name), data, 0o600); err != nil {
				return err
			}
		}
	}
	return printJSON(map[string]any{"svids": svids, "bundles": bundleSummary(xc.Bundles)})
}

func bundleSummary(set *x509bundle.Set) map[string]int {
	out := map[string]int{}
	for _, b := range set.Bundles() {
		out[b.TrustDomain().Name()] = len(b.X509Authorities())
	}
	return out
}

func wlJWT(args []string) error {
	var o workloadOpts
	fs := newFlagSet("workload jwt")
	o.register(fs)
	subject := fs.String("subject", "", "ask for this SPIFFE ID (default: the agent's choice)")
	tokenOnly := fs.Bool("token-only", false, "print only the token")
	var aud multiFlag
	fs.Var(&aud, "aud", "audience (repeatable; at least one)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(aud) == 0 {
		fmt.Fprintln(os.Stderr, "workload jwt: --aud is required")
		return errUsage
	}
	p := jwtsvid.Params{Audience: aud[0], ExtraAudiences: aud[1:]}
	if *subject != "" {
		id, err := spiffeid.FromString(*subject)
		if err != nil {
			return err
		}
		p.Subject = id
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	c, err := o.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := c.FetchJWTSVID(ctx, p)
	if err != nil {
		return grpcErr("FetchJWTSVID", err)
	}
	if *tokenOnly {
		fmt.Println(s.Marshal())
		return nil
	}
	return printJSON(map[string]any{
		"spiffe_id": s.ID.String(), "aud": s.Audience, "exp": s.Expiry.Unix(),
		"hint": s.Hint, "token": s.Marshal(),
	})
}

func wlBundles(args []string) error {
	var o workloadOpts
	fs := newFlagSet("workload bundles")
	o.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	c, err := o.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	jb, err := c.FetchJWTBundles(ctx)
	if err != nil {
		return grpcErr("FetchJWTBundles", err)
	}
	xb, err := c.FetchX509Bundles(ctx)
	if err != nil {
		return grpcErr("FetchX509Bundles", err)
	}
	jwt := map[string][]string{}
	for _, b := range jb.Bundles() {
		var kids []string
		for kid := range b.JWTAuthorities() {
			kids = append(kids, kid)
		}
		sort.Strings(kids)
		jwt[b.TrustDomain().Name()] = kids
	}
	return printJSON(map[string]any{"jwt": jwt, "x509": bundleSummary(xb)})
}

func wlValidate(args []string) error {
	var o workloadOpts
	fs := newFlagSet("workload validate")
	o.register(fs)
	token := fs.String("token", "", "the JWT-SVID")
	aud := fs.String("aud", "", "audience")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := need("workload validate", "token", *token, "aud", *aud); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	c, err := o.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := c.ValidateJWTSVID(ctx, *token, *aud)
	if err != nil {
		return grpcErr("ValidateJWTSVID", err)
	}
	return printJSON(map[string]any{"spiffe_id": s.ID.String(), "claims": s.Claims})
}

// wlValidateLocal validates a JWT-SVID in this process, with go-spiffe's
// jwtsvid.ParseAndValidate, against the JWT bundles fetched from the agent
// (FetchJWTBundles): the agent only serves the keys, go-spiffe verifies.
func wlValidateLocal(args []string) error {
	var o workloadOpts
	fs := newFlagSet("workload validate-local")
	o.register(fs)
	token := fs.String("token", "", "the JWT-SVID")
	aud := fs.String("aud", "", "audience")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := need("workload validate-local", "token", *token, "aud", *aud); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	c, err := o.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	bundles, err := c.FetchJWTBundles(ctx)
	if err != nil {
		return grpcErr("FetchJWTBundles", err)
	}
	s, err := jwtsvid.ParseAndValidate(*token, bundles, []string{*aud})
	if err != nil {
		return fmt.Errorf("jwtsvid.ParseAndValidate: %w", err)
	}
	return printJSON(map[string]any{"spiffe_id": s.ID.String(), "claims": s.Claims})
}

// rotationWatcher counts X.509 context updates whose leaf serial changed.
type rotationWatcher struct {
	want    int
	seen    int
	serials map[string]bool
	last    string
	done    context.CancelFunc
	errs    int
}

func (w *rotationWatcher) OnX509ContextUpdate(xc *workloadapi.X509Context) {
	s := xc.DefaultSVID()
	if s == nil {
		return
	}
	serial := s.Certificates[0].SerialNumber.Text(16)
	if w.last == "" {
		fmt.Fprintf(os.Stderr, "watch-x509: first SVID %s serial %s not_after %s\n",
			s.ID, serial, s.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	} else if serial != w.last {
		if w.serials[serial] {
			fmt.Fprintf(os.Stderr, "watch-x509: serial %s came back\n", serial)
		}
		w.seen++
		fmt.Fprintf(os.Stderr, "watch-x509: rotation %d: serial %s not_after %s\n",
			w.seen, serial, s.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	}
	w.serials[serial] = true
	w.last = serial
	if w.seen >= w.want {
		w.done()
	}
}

func (w *rotationWatcher) OnX509ContextWatchError(err error) {
	w.errs++
	fmt.Fprintf(os.Stderr, "watch-x509: %v\n", grpcErr("WatchX509Context", err))
}

func wlWatchX509(args []string) error {
	var o workloadOpts
	fs := newFlagSet("workload watch-x509")
	o.register(fs)
	n := fs.Int("rotations", 1, "succeed after this many new SVIDs (after the first)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !flagSet(fs, "timeout") {
		o.timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	c, err := o.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w := &rotationWatcher{want: *n, serials: map[string]bool{}, done: stop}
	err = c.WatchX509Context(wctx, w)
	if w.seen >= w.want {
		fmt.Printf("%d rotation(s) seen\n", w.seen)
		return nil
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return grpcErr("WatchX509Context", err)
	}
	return fmt.Errorf("watch-x509: %d of %d rotation(s) within %s", w.seen, w.want, o.timeout)
}

// flagSet tells whether the flag was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			found = true
		}
	})
	return found
}

// wlProbe calls FetchX509SVID with go-spiffe's generated stub, with or
// without the workload.spiffe.io header, and prints the gRPC code of the
// first message ("OK" or e.g. "InvalidArgument").  It exits 0 either way
// when the call completed; tests compare the printed code.
func wlProbe(args []string) error {
	var o workloadOpts
	fs := newFlagSet("workload probe")
	o.register(fs)
	noHeader := fs.Bool("no-header", false, "omit the workload.spiffe.io: true metadata")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a, err := o.addr()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if !*noHeader {
		ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	}
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		var resp *workload.X509SVIDResponse
		if resp, err = stream.Recv(); err == nil {
			for _, s := range resp.Svids {
				if _, perr := x509.ParseCertificates(s.X509Svid); perr != nil {
					return fmt.Errorf("probe: bad x509_svid for %s: %w", s.SpiffeId, perr)
				}
			}
		}
	}
	fmt.Println(status.Code(err).String())
	return nil
}
