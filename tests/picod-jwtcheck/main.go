// picod-jwtcheck: the fallback when AgentCube's module cannot be had.  A
// verifier written against github.com/golang-jwt/jwt/v5 with exactly the
// options AgentCube's PicoD uses (pkg/picod/auth.go): the RSA family of
// signing methods only, expiration required, issued-at checked, one minute
// of leeway, the key from PICOD_AUTH_PUBLIC_KEY as a PKIX RSA PEM.
//
//	PICOD_AUTH_PUBLIC_KEY="$(cat key.pem)" picod-jwtcheck 'Bearer <jwt>'
//
// Exit status 0 when PicoD would let the request through, 1 otherwise.
package main

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: picod-jwtcheck 'Bearer <jwt>'")
		os.Exit(2)
	}
	block, _ := pem.Decode([]byte(os.Getenv("PICOD_AUTH_PUBLIC_KEY")))
	if block == nil {
		fmt.Fprintln(os.Stderr, "picod-jwtcheck: no PEM in PICOD_AUTH_PUBLIC_KEY")
		os.Exit(2)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "picod-jwtcheck:", err)
		os.Exit(2)
	}
	rsaPub, ok := pub.(*rsa.PublicKey)
	if !ok {
		fmt.Fprintln(os.Stderr, "picod-jwtcheck: key is not an RSA public key")
		os.Exit(2)
	}
	parts := strings.Split(os.Args[1], " ")
	if len(parts) != 2 || parts[0] != "Bearer" {
		fmt.Println("401 Invalid Authorization header format")
		os.Exit(1)
	}
	token, err := jwt.Parse(parts[1], func(token *jwt.Token) (interface{}, error) {
		if _, ok := token.Method.(*jwt.SigningMethodRSA); !ok {
			return nil, fmt.Errorf("unexpected signing method: %v", token.Header["alg"])
		}
		return rsaPub, nil
	}, jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(time.Minute))
	if err != nil || !token.Valid {
		fmt.Printf("401 JWT verification failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("200 accepted")
}
