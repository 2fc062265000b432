package main

// x509-verify and jwt-verify: go-spiffe's own validators on files that cubeid
// (or anything else) produced.

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// maxInput bounds every file this tool reads.
const maxInput = 1 << 20

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInput+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxInput)
	}
	return b, nil
}

// pemCertsDER returns the DER of every CERTIFICATE block, in file order.
func pemCertsDER(b []byte) [][]byte {
	var out [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, blk.Bytes)
		}
	}
}

func cmdX509Verify(args []string) error {
	fs := newFlagSet("x509-verify")
	svidPath := fs.String("svid", "", "PEM chain: the leaf X.509-SVID, then intermediates")
	bundlePath := fs.String("bundle", "", "PEM X.509 bundle (trust anchors)")
	spiffePath := fs.String("bundle-spiffe", "", "SPIFFE bundle document (instead of --bundle)")
	tdName := fs.String("td", "", "trust domain of the bundle (default: the leaf's)")
	at := fs.String("time", "", "verify at this RFC 3339 time instead of now")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := need("x509-verify", "svid", *svidPath); err != nil {
		return err
	}
	if (*bundlePath == "") == (*spiffePath == "") {
		fmt.Fprintln(os.Stderr, "x509-verify: give exactly one of --bundle and --bundle-spiffe")
		return errUsage
	}
	chainPEM, err := readLimited(*svidPath)
	if err != nil {
		return err
	}
	raw := pemCertsDER(chainPEM)
	if len(raw) == 0 {
		return fmt.Errorf("%s: no CERTIFICATE block", *svidPath)
	}

	var td spiffeid.TrustDomain
	if *tdName != "" {
		if td, err = spiffeid.TrustDomainFromString(*tdName); err != nil {
			return err
		}
	} else {
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("leaf: %w", err)
		}
		id, err := x509svid.IDFromCert(leaf)
		if err != nil {
			return fmt.Errorf("x509svid: %w", err)
		}
		td = id.TrustDomain()
	}

	var bundle *x509bundle.Bundle
	if *bundlePath != "" {
		b, err := readLimited(*bundlePath)
		if err != nil {
			return err
		}
		if bundle, err = x509bundle.Parse(td, b); err != nil {
			return err
		}
	} else {
		b, err := readLimited(*spiffePath)
		if err != nil {
			return err
		}
		sb, err := spiffebundle.Parse(td, b)
		if err != nil {
			return err
		}
		bundle = sb.X509Bundle()
	}

	var opts []x509svid.VerifyOption
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return fmt.Errorf("--time: %w", err)
		}
		opts = append(opts, x509svid.WithTime(t))
	}
	id, chains, err := x509svid.ParseAndVerify(raw, bundle, opts...)
	if err != nil {
		return err
	}
	fmt.Println(id.String())
	fmt.Fprintf(os.Stderr, "x509-verify: ok, %d verified chain(s), chain length %d\n",
		len(chains), len(chains[0]))
	return nil
}

func cmdJWTVerify(args []string) error {
	fs := newFlagSet("jwt-verify")
	token := fs.String("token", "", "the JWT-SVID")
	tokenFile := fs.String("token-file", "", "file holding the JWT-SVID")
	jwksPath := fs.String("bundle", "", "JWT bundle as a JWKS (keys need kid)")
	spiffePath := fs.String("bundle-spiffe", "", "SPIFFE bundle document (keys with use=jwt-svid)")
	tdName := fs.String("td", "", "trust domain of the bundle")
	var aud multiFlag
	fs.Var(&aud, "aud", "an accepted audience (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := need("jwt-verify", "td", *tdName); err != nil {
		return err
	}
	if len(aud) == 0 {
		fmt.Fprintln(os.Stderr, "jwt-verify: --aud is required")
		return errUsage
	}
	if (*token == "") == (*tokenFile == "") {
		fmt.Fprintln(os.Stderr, "jwt-verify: give exactly one of --token and --token-file")
		return errUsage
	}
	if (*jwksPath == "") == (*spiffePath == "") {
		fmt.Fprintln(os.Stderr, "jwt-verify: give exactly one of --bundle and --bundle-spiffe")
		return errUsage
	}
	td, err := spiffeid.TrustDomainFromString(*tdName)
	if err != nil {
		return err
	}
	tok := *token
	if *tokenFile != "" {
		b, err := readLimited(*tokenFile)
		if err != nil {
			return err
		}
		tok = strings.TrimSpace(string(b))
	}

	var bundle *jwtbundle.Bundle
	if *jwksPath != "" {
		b, err := readLimited(*jwksPath)
		if err != nil {
			return err
		}
		if bundle, err = jwtbundle.Parse(td, b); err != nil {
			return err
		}
	} else {
		b, err := readLimited(*spiffePath)
		if err != nil {
			return err
		}
		sb, err := spiffebundle.Parse(td, b)
		if err != nil {
			return err
		}
		bundle = sb.JWTBundle()
	}

	svid, err := jwtsvid.ParseAndValidate(tok, bundle, aud)
	if err != nil {
		return err
	}
	return printJSON(map[string]any{
		"sub":    svid.ID.String(),
		"aud":    svid.Audience,
		"exp":    svid.Expiry.Unix(),
		"claims": svid.Claims,
	})
}
