package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestDemoPortsTaken runs the demo while its query and OTLP ports are taken: it must say so and
// serve on free ports, printing addresses a browser and an SDK can use.
func TestDemoPortsTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	var taken []string
	for i := 0; i < 3; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		taken = append(taken, l.Addr().String())
	}
	if _, ok := freeOr(taken[0]); ok {
		t.Fatalf("freeOr(%s) says free while it is listened on", taken[0])
	}
	// The demo's defaults are the standard ports; here the test's taken ports stand in for them
	// through the config the flags default to.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := &watchBuffer{want: "/trace/", seen: make(chan struct{})}
	var errOut syncBuffer
	done := make(chan int, 1)
	root := newRootCmd(nil, out, &errOut)
	demo, _, _ := root.Find([]string{"demo"})
	for i, name := range []string{"http-addr", "otlp-grpc-addr", "otlp-http-addr"} {
		f := demo.Flags().Lookup(name)
		f.Value.Set(taken[i]) // a default, not a user's choice: Changed stays false
		f.Changed = false
	}
	root.SetArgs([]string{"demo", "--data-dir", t.TempDir(), "--archive-rows", "2000"})
	go func() {
		if err := root.ExecuteContext(ctx); err != nil {
			errOut.Write([]byte(err.Error()))
			done <- 1
			return
		}
		done <- 0
	}()
	select {
	case <-out.seen:
	case <-ctx.Done():
	}
	cancel()
	<-done
	got := out.String()
	for _, a := range taken {
		if !strings.Contains(got, "Note: "+a+" is in use") {
			t.Errorf("no note that %s is taken:\n%s", a, got)
		}
	}
	if !strings.Contains(got, "open http://localhost:") || !strings.Contains(got, "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:") ||
		!strings.Contains(got, "/trace/") {
		t.Errorf("demo output:\n%s\nstderr:\n%s", got, errOut.String())
	}
}
