package main

// x509-mint and jwt-mint: SVIDs made with plain Go crypto, independent of
// cubeid, in the shapes the X509-SVID and JWT-SVID specs describe.  --defect
// makes one deliberate spec violation so that verifiers can be tested on it.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// X.509 defects: what is wrong with the minted leaf or chain.
var x509Defects = map[string]string{
	"leaf-ca":              "leaf has cA=true",
	"leaf-keycertsign":     "leaf key usage has keyCertSign",
	"leaf-crlsign":         "leaf key usage has cRLSign",
	"two-uris":             "leaf has two URI SANs",
	"no-uri":               "leaf has no URI SAN",
	"expired":              "leaf validity ended an hour ago",
	"not-yet-valid":        "leaf validity starts in an hour",
	"wrong-td":             "leaf SPIFFE ID is in another trust domain than the CA",
	"untrusted-root":       "chain is signed by a root that is not in bundle.pem",
	"intermediate-not-ca":  "intermediate has cA=false",
	"no-digital-signature": "leaf key usage lacks digitalSignature (spec MUST; Go's verifier does not check)",
}

// JWT defects.
var jwtDefects = map[string]string{
	"alg-none":     `header alg "none", no signature`,
	"hs256":        "HMAC-SHA256 signed (alg HS256)",
	"no-kid":       "header has no kid",
	"unknown-kid":  "kid not in the bundle",
	"no-aud":       "no aud claim",
	"no-exp":       "no exp claim",
	"expired":      "exp an hour ago",
	"bad-typ":      `header typ "at+jwt"`,
	"bad-sig":      "signature bytes flipped",
	"wrong-td-sub": "sub in another trust domain than the bundle",
}

func newKey(kind string) (crypto.Signer, error) {
	switch kind {
	case "ec256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ec384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("unknown key type %q (ec256, ec384, rsa2048)", kind)
}

// serial128 is a random positive 128-bit serial number.
func serial128() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
		if err != nil {
			return nil, err
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func writePEM(path, typ string, ders ...[]byte) error {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	return os.WriteFile(path, out, 0o600)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der)
}

func writePublicKey(path string, pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return writePEM(path, "PUBLIC KEY", der)
}

type certReq struct {
	tmpl   *x509.Certificate
	parent *x509.Certificate // nil: self-signed
	pub    crypto.PublicKey
	signer crypto.Signer
}

func (r certReq) create() (*x509.Certificate, error) {
	parent := r.parent
	if parent == nil {
		parent = r.tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, r.tmpl, parent, r.pub, r.signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func caTemplate(cn string, td spiffeid.TrustDomain, now time.Time, pathLen int) (*x509.Certificate, error) {
	serial, err := serial128()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"cubeid-interop"}, CommonName: cn},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLen == 0,
		URIs:                  []*url.URL{td.ID().URL()},
	}, nil
}

func cmdX509Mint(args []string) error {
	fs := newFlagSet("x509-mint")
	tdName := fs.String("td", "", "trust domain of the CA")
	idStr := fs.String("id", "", "SPIFFE ID of the leaf")
	outDir := fs.String("out", "", "output directory")
	keyKind := fs.String("key", "ec256", "key type of every certificate: ec256, ec384, rsa2048")
	ttl := fs.Duration("ttl", time.Hour, "leaf lifetime")
	defect := fs.String("defect", "", "one deliberate spec violation (see --defect list)")
	var dns multiFlag
	fs.Var(&dns, "dns", "a DNS SAN for the leaf (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *defect == "list" {
		for k, v := range x509Defects {
			fmt.Printf("%-22s %s\n", k, v)
		}
		return nil
	}
	if err := need("x509-mint", "td", *tdName, "id", *idStr, "out", *outDir); err != nil {
		return err
	}
	if _, ok := x509Defects[*defect]; *defect != "" && !ok {
		fmt.Fprintf(os.Stderr, "x509-mint: unknown --defect %q (try --defect list)\n", *defect)
		return errUsage
	}
	td, err := spiffeid.TrustDomainFromString(*tdName)
	if err != nil {
		return err
	}
	id, err := spiffeid.FromString(*idStr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*outDir, 0o700); err != nil {
		return err
	}
	now := time.Now()

	rootKey, err := newKey(*keyKind)
	if err != nil {
		return err
	}
	rootTmpl, err := caTemplate("cubeid-interop root", td, now, 1)
	if err != nil {
		return err
	}
	root, err := certReq{rootTmpl, nil, rootKey.Public(), rootKey}.create()
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	// untrusted-root: the chain hangs off a second root; bundle.pem still
	// holds the first.
	signingRoot, signingRootKey := root, rootKey
	if *defect == "untrusted-root" {
		if signingRootKey, err = newKey(*keyKind); err != nil {
			return err
		}
		t, err := caTemplate("cubeid-interop other root", td, now, 1)
		if err != nil {
			return err
		}
		if signingRoot, err = (certReq{t, nil, signingRootKey.Public(), signingRootKey}).create(); err != nil {
			return err
		}
	}

	intKey, err := newKey(*keyKind)
	if err != nil {
		return err
	}
	intTmpl, err := caTemplate("cubeid-interop intermediate", td, now, 0)
	if err != nil {
		return err
	}
	if *defect == "intermediate-not-ca" {
		intTmpl.IsCA, intTmpl.MaxPathLen, intTmpl.MaxPathLenZero = false, -1, false
		intTmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	inter, err := certReq{intTmpl, signingRoot, intKey.Public(), signingRootKey}.create()
	if err != nil {
		return fmt.Errorf("intermediate: %w", err)
	}

	leafKey, err := newKey(*keyKind)
	if err != nil {
		return err
	}
	serial, err := serial128()
	if err != nil {
		return err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"cubeid-interop"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(*ttl),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              dns,
	}
	switch *defect {
	case "leaf-ca":
		leafTmpl.IsCA = true
	case "leaf-keycertsign":
		leafTmpl.KeyUsage |= x509.KeyUsageCertSign
	case "leaf-crlsign":
		leafTmpl.KeyUsage |= x509.KeyUsageCRLSign
	case "two-uris":
		second, _ := url.Parse(id.String() + "-second")
		leafTmpl.URIs = append(leafTmpl.URIs, second)
	case "no-uri":
		leafTmpl.URIs = nil
		if len(leafTmpl.DNSNames) == 0 {
			leafTmpl.DNSNames = []string{"no-uri.invalid"}
		}
	case "expired":
		leafTmpl.NotBefore, leafTmpl.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
	case "not-yet-valid":
		leafTmpl.NotBefore, leafTmpl.NotAfter = now.Add(time.Hour), now.Add(2*time.Hour)
	case "wrong-td":
		other, _ := spiffeid.FromSegments(spiffeid.RequireTrustDomainFromString("other-"+td.Name()), "wrong-td")
		leafTmpl.URIs = []*url.URL{other.URL()}
	case "no-digital-signature":
		leafTmpl.KeyUsage = x509.KeyUsageKeyEncipherment
		if _, isEC := leafKey.(*ecdsa.PrivateKey); isEC {
			leafTmpl.KeyUsage = x509.KeyUsageKeyAgreement
		}
	}
	leaf, err := certReq{leafTmpl, inter, leafKey.Public(), intKey}.create()
	if err != nil {
		return fmt.Errorf("leaf: %w", err)
	}

	// The SPIFFE bundle document of the trust domain: x509-svid keys with x5c.
	sb := spiffebundle.FromX509Authorities(td, []*x509.Certificate{root})
	sb.SetSequenceNumber(1)
	sb.SetRefreshHint(5 * time.Minute)
	sbJSON, err := sb.Marshal()
	if err != nil {
		return err
	}

	out := *outDir
	for _, w := range []struct {
		name string
		fn   func(string) error
	}{
		{"svid.pem", func(p string) error { return writePEM(p, "CERTIFICATE", leaf.Raw, inter.Raw) }},
		{"svid_key.pem", func(p string) error { return writeKey(p, leafKey) }},
		{"bundle.pem", func(p string) error { return writePEM(p, "CERTIFICATE", root.Raw) }},
		{"leaf.pem", func(p string) error { return writePEM(p, "CERTIFICATE", leaf.Raw) }},
		{"intermediate.pem", func(p string) error { return writePEM(p, "CERTIFICATE", inter.Raw) }},
		{"bundle.spiffe.json", func(p string) error { return os.WriteFile(p, sbJSON, 0o600) }},
	} {
		if err := w.fn(filepath.Join(out, w.name)); err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
	}
	for _, u := range leaf.URIs {
		fmt.Println(u.String())
	}
	return nil
}

var b64 = base64.RawURLEncoding

// fixedBytes left-pads n to size bytes (JWS EC coordinates and r||s).
func fixedBytes(n *big.Int, size int) []byte {
	out := make([]byte, size)
	n.FillBytes(out)
	return out
}

// jwk is the JWK of a public key, with the SPIFFE jwt-svid use.
func jwk(pub crypto.PublicKey, kid string) (map[string]any, error) {
	k := map[string]any{"kid": kid, "use": "jwt-svid"}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		size := (p.Curve.Params().BitSize + 7) / 8
		k["kty"], k["crv"] = "EC", p.Curve.Params().Name
		k["x"] = b64.EncodeToString(fixedBytes(p.X, size))
		k["y"] = b64.EncodeToString(fixedBytes(p.Y, size))
	case *rsa.PublicKey:
		k["kty"] = "RSA"
		k["n"] = b64.EncodeToString(p.N.Bytes())
		k["e"] = b64.EncodeToString(big.NewInt(int64(p.E)).Bytes())
	default:
		return nil, fmt.Errorf("unsupported public key %T", pub)
	}
	return k, nil
}

// jwsSign signs input with alg; key must match it.
func jwsSign(alg string, key crypto.Signer, input []byte) ([]byte, error) {
	var h crypto.Hash
	switch alg {
	case "ES256", "RS256", "PS256":
		h = crypto.SHA256
	case "ES384":
		h = crypto.SHA384
	default:
		return nil, fmt.Errorf("unsupported alg %q", alg)
	}
	var digest []byte
	if h == crypto.SHA256 {
		d := sha256.Sum256(input)
		digest = d[:]
	} else {
		d := sha512.Sum384(input)
		digest = d[:]
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return nil, err
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		return append(fixedBytes(r, size), fixedBytes(s, size)...), nil
	case *rsa.PrivateKey:
		if alg == "PS256" {
			return rsa.SignPSS(rand.Reader, k, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.SignPKCS1v15(rand.Reader, k, h, digest)
	}
	return nil, fmt.Errorf("unsupported key %T", key)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func cmdJWTMint(args []string) error {
	fs := newFlagSet("jwt-mint")
	tdName := fs.String("td", "", "trust domain of the bundle")
	idStr := fs.String("id", "", "SPIFFE ID (sub)")
	alg := fs.String("alg", "ES256", "ES256, ES384, RS256 or PS256")
	outDir := fs.String("out", "", "output directory")
	ttl := fs.Duration("ttl", 5*time.Minute, "token lifetime")
	kid := fs.String("kid", "", "key ID (default: random)")
	audForm := fs.String("aud-form", "array", "aud as a JSON array or, for one audience, a string")
	defect := fs.String("defect", "", "one deliberate spec violation (see --defect list)")
	var aud multiFlag
	fs.Var(&aud, "aud", "an audience (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *defect == "list" {
		for k, v := range jwtDefects {
			fmt.Printf("%-14s %s\n", k, v)
		}
		return nil
	}
	if err := need("jwt-mint", "td", *tdName, "id", *idStr, "out", *outDir); err != nil {
		return err
	}
	if len(aud) == 0 && *defect != "no-aud" {
		fmt.Fprintln(os.Stderr, "jwt-mint: --aud is required")
		return errUsage
	}
	if _, ok := jwtDefects[*defect]; *defect != "" && !ok {
		fmt.Fprintf(os.Stderr, "jwt-mint: unknown --defect %q (try --defect list)\n", *defect)
		return errUsage
	}
	td, err := spiffeid.TrustDomainFromString(*tdName)
	if err != nil {
		return err
	}
	id, err := spiffeid.FromString(*idStr)
	if err != nil {
		return err
	}
	var key crypto.Signer
	switch *alg {
	case "ES256":
		key, err = newKey("ec256")
	case "ES384":
		key, err = newKey("ec384")
	case "RS256", "PS256":
		key, err = newKey("rsa2048")
	default:
		fmt.Fprintf(os.Stderr, "jwt-mint: --alg %q: use ES256, ES384, RS256 or PS256\n", *alg)
		return errUsage
	}
	if err != nil {
		return err
	}
	if *kid == "" {
		*kid = randomHex(16)
	}
	now := time.Now()

	header := map[string]any{"alg": *alg, "kid": *kid, "typ": "JWT"}
	claims := map[string]any{
		"sub": id.String(),
		"iat": now.Unix(),
		"exp": now.Add(*ttl).Unix(),
		"jti": randomHex(16),
	}
	if len(aud) == 1 && *audForm == "string" {
		claims["aud"] = aud[0]
	} else {
		claims["aud"] = []string(aud)
	}
	switch *defect {
	case "alg-none":
		header["alg"] = "none"
	case "hs256":
		header["alg"] = "HS256"
	case "no-kid":
		delete(header, "kid")
	case "unknown-kid":
		header["kid"] = *kid + "-unknown"
	case "no-aud":
		delete(claims, "aud")
	case "no-exp":
		delete(claims, "exp")
	case "expired":
		claims["iat"], claims["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	case "bad-typ":
		header["typ"] = "at+jwt"
	case "wrong-td-sub":
		other, _ := spiffeid.FromSegments(spiffeid.RequireTrustDomainFromString("other-"+td.Name()), "wrong-td")
		claims["sub"] = other.String()
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return err
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return err
	}
	input := b64.EncodeToString(hj) + "." + b64.EncodeToString(cj)
	var sig []byte
	switch *defect {
	case "alg-none":
	case "hs256":
		m := hmac.New(sha256.New, []byte("cubeid-interop-hs256-secret"))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	default:
		if sig, err = jwsSign(*alg, key, []byte(input)); err != nil {
			return err
		}
		if *defect == "bad-sig" {
			sig[len(sig)/2] ^= 0xff
		}
	}
	token := input + "." + b64.EncodeToString(sig)

	k, err := jwk(key.Public(), *kid)
	if err != nil {
		return err
	}
	jwks, err := json.MarshalIndent(map[string]any{"keys": []any{k}}, "", "  ")
	if err != nil {
		return err
	}
	sbDoc, err := json.MarshalIndent(map[string]any{
		"keys":                []any{k},
		"spiffe_sequence":     1,
		"spiffe_refresh_hint": 300,
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*outDir, 0o700); err != nil {
		return err
	}
	for _, w := range []struct {
		name string
		fn   func(string) error
	}{
		{"token.jwt", func(p string) error { return os.WriteFile(p, []byte(token+"\n"), 0o600) }},
		{"jwks.json", func(p string) error { return os.WriteFile(p, append(jwks, '\n'), 0o600) }},
		{"bundle.spiffe.json", func(p string) error { return os.WriteFile(p, append(sbDoc, '\n'), 0o600) }},
		{"key.pem", func(p string) error { return writeKey(p, key) }},
		{"public.pem", func(p string) error { return writePublicKey(p, key.Public()) }},
	} {
		if err := w.fn(filepath.Join(*outDir, w.name)); err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
	}
	fmt.Println(token)
	return nil
}
