// picod-peer: AgentCube's real PicoD (github.com/volcano-sh/agentcube
// pkg/picod, from the Go module proxy), for cubeid's tests.  It builds the
// server exactly as AgentCube's cmd/picod does (picod.NewServer: the route
// table, PICOD_AUTH_PUBLIC_KEY loading and the JWT auth middleware), but
// serves it on a loopback address of the test's choosing instead of
// ":PORT" on every interface.  Usage:
//
//	PICOD_AUTH_PUBLIC_KEY="$(cat key.pem)" picod-peer WORKSPACE ADDRFILE
//
// It listens on 127.0.0.1:0 and writes the address to ADDRFILE.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"time"
	"unsafe"

	"github.com/gin-gonic/gin"
	"github.com/volcano-sh/agentcube/pkg/picod"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: picod-peer WORKSPACE ADDRFILE")
		os.Exit(2)
	}
	s := picod.NewServer(picod.Config{Port: 0, Workspace: os.Args[1]})
	// Server keeps its gin engine unexported; Run() would listen on ":port".
	f := reflect.ValueOf(s).Elem().FieldByName("engine")
	if !f.IsValid() || f.Type() != reflect.TypeOf((*gin.Engine)(nil)) {
		fmt.Fprintln(os.Stderr, "picod-peer: picod.Server has no engine field of type *gin.Engine")
		os.Exit(1)
	}
	engine := *(**gin.Engine)(unsafe.Pointer(f.UnsafeAddr()))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "picod-peer:", err)
		os.Exit(1)
	}
	tmp := os.Args[2] + ".tmp"
	if err := os.WriteFile(tmp, []byte(l.Addr().String()+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "picod-peer:", err)
		os.Exit(1)
	}
	if err := os.Rename(tmp, os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "picod-peer:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: engine, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintln(os.Stderr, "picod-peer: AgentCube PicoD (pkg/picod) serving on", l.Addr())
	if err := srv.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, "picod-peer:", err)
		os.Exit(1)
	}
}
