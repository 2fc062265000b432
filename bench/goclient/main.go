// bench-goclient: the go-spiffe v2 workloadapi client that bench/compare-spire
// drives against cubeid-agent and spire-agent alike, so that both are
// measured by the same client, as Go workloads use them.  Usage:
//
//	bench-goclient SOCKET cold N             N x (new client, FetchX509SVID, close)
//	bench-goclient SOCKET jwt T SECS fresh   T goroutines, one reused client each,
//	                                         FetchJWTSVID; fresh=1: a new audience per call
//	                                         (for $BENCH_SUBJECT alone when it is set)
//	bench-goclient SOCKET validate T SECS    ValidateJWTSVID of one token, T goroutines
//	bench-goclient SOCKET streams N          hold N watch streams (N clients) open
//	                                         until stdin closes; "ready" once all got one
//	bench-goclient SOCKET watch SPIFFEID     print "watching", then the unix time in ns
//	                                         at which an SVID with SPIFFEID arrives
//
// Output: "key value" lines on stdout.  Exit status 1 on any failed call.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

var addr string

// subject: $BENCH_SUBJECT, the one SPIFFE ID a JWT-SVID is asked for (the
// caller may have several); unset, every identity of the caller.
var subject spiffeid.ID

func die(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench-goclient: "+f+"\n", a...)
	os.Exit(1)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		die("bad number %q", s)
	}
	return n
}

func newClient(ctx context.Context) *workloadapi.Client {
	c, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		die("new client: %v", err)
	}
	return c
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	i := int(q*float64(len(v)-1) + 0.5)
	return v[i]
}

func cold(n int) {
	ctx := context.Background()
	lat := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		c := newClient(ctx)
		s, err := c.FetchX509SVID(ctx)
		c.Close()
		if err != nil || s == nil {
			die("FetchX509SVID: %v", err)
		}
		lat = append(lat, float64(time.Since(t0).Nanoseconds())/1e6)
	}
	fmt.Printf("p50_ms %.3f\np99_ms %.3f\n", quantile(lat, 0.5), quantile(lat, 0.99))
}

func rate(threads int, secs float64, call func(c *workloadapi.Client, tid int, i int) error) {
	ctx := context.Background()
	clients := make([]*workloadapi.Client, threads)
	for t := range clients {
		clients[t] = newClient(ctx)
		if err := call(clients[t], t, -1); err != nil { // warm the connection
			die("warm-up call: %v", err)
		}
	}
	var total atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	end := t0.Add(time.Duration(secs * float64(time.Second)))
	for t := 0; t < threads; t++ {
		wg.Add(1)
		go func(t int) {
			defer wg.Done()
			for i := 0; time.Now().Before(end); i++ {
				if err := call(clients[t], t, i); err != nil {
					fmt.Fprintf(os.Stderr, "bench-goclient: call: %v\n", err)
					failed.Add(1)
					return
				}
				total.Add(1)
			}
		}(t)
	}
	wg.Wait()
	el := time.Since(t0).Seconds()
	for _, c := range clients {
		c.Close()
	}
	if failed.Load() > 0 {
		os.Exit(1)
	}
	fmt.Printf("rate %.1f\ncalls %d\n", float64(total.Load())/el, total.Load())
}

func jwt(threads int, secs float64, fresh bool) {
	ctx := context.Background()
	pid := os.Getpid()
	rate(threads, secs, func(c *workloadapi.Client, t, i int) error {
		aud := "bench-aud"
		if fresh {
			aud = fmt.Sprintf("bench-go-%d-%d-%d", pid, t, i)
		}
		s, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: aud, Subject: subject})
		if err == nil && s.Marshal() == "" {
			err = fmt.Errorf("an empty token")
		}
		return err
	})
}

func validate(threads int, secs float64) {
	ctx := context.Background()
	c := newClient(ctx)
	s, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "bench-validate", Subject: subject})
	if err != nil {
		die("FetchJWTSVID: %v", err)
	}
	tok := s.Marshal()
	c.Close()
	rate(threads, secs, func(c *workloadapi.Client, t, i int) error {
		_, err := c.ValidateJWTSVID(ctx, tok, "bench-validate")
		return err
	})
}

type watcher struct {
	once sync.Once
	ctx  context.Context
	got  func(*workloadapi.X509Context)
}

func (w *watcher) OnX509ContextUpdate(x *workloadapi.X509Context) { w.got(x) }
func (w *watcher) OnX509ContextWatchError(err error) {
	if w.ctx.Err() == nil { // not the cancel that ends the watch
		fmt.Fprintf(os.Stderr, "bench-goclient: watch: %v\n", err)
	}
}

func streams(n int) {
	ctx, cancel := context.WithCancel(context.Background())
	var ready sync.WaitGroup
	var done sync.WaitGroup
	for i := 0; i < n; i++ {
		ready.Add(1)
		done.Add(1)
		c := newClient(ctx)
		w := &watcher{ctx: ctx}
		w.got = func(*workloadapi.X509Context) { w.once.Do(ready.Done) }
		go func() {
			defer done.Done()
			_ = c.WatchX509Context(ctx, w)
			c.Close()
		}()
	}
	ready.Wait()
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	done.Wait()
}

func watch(id string) {
	ctx, cancel := context.WithCancel(context.Background())
	c := newClient(ctx)
	var first sync.Once
	var at atomic.Int64
	w := &watcher{ctx: ctx}
	w.got = func(x *workloadapi.X509Context) {
		now := time.Now().UnixNano()
		first.Do(func() { fmt.Println("watching"); os.Stdout.Sync() })
		for _, s := range x.SVIDs {
			if s.ID.String() == id {
				at.CompareAndSwap(0, now)
				cancel()
			}
		}
	}
	_ = c.WatchX509Context(ctx, w)
	c.Close()
	if at.Load() == 0 {
		die("the watch ended with no SVID for %s", id)
	}
	fmt.Printf("at_ns %d\n", at.Load())
}

func main() {
	if len(os.Args) < 3 {
		die("usage: bench-goclient SOCKET cold N | jwt T SECS FRESH | validate T SECS | streams N | watch ID")
	}
	addr = "unix://" + os.Args[1]
	if v := os.Getenv("BENCH_SUBJECT"); v != "" {
		id, err := spiffeid.FromString(v)
		if err != nil {
			die("BENCH_SUBJECT: %v", err)
		}
		subject = id
	}
	a := os.Args[2:]
	need := func(n int) {
		if len(a) < n {
			die("%s: missing arguments", a[0])
		}
	}
	switch a[0] {
	case "cold":
		need(2)
		cold(atoi(a[1]))
	case "jwt":
		need(4)
		secs, _ := strconv.ParseFloat(a[2], 64)
		jwt(atoi(a[1]), secs, a[3] == "1")
	case "validate":
		need(3)
		secs, _ := strconv.ParseFloat(a[2], 64)
		validate(atoi(a[1]), secs)
	case "streams":
		need(2)
		streams(atoi(a[1]))
	case "watch":
		need(2)
		watch(a[1])
	default:
		die("unknown command %q", a[0])
	}
}
