package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// startWithGuide starts an in-process Ariadne and sends it what emit produces through the real
// OpenTelemetry SDK over OTLP/gRPC, as the task-api service; it returns the server's query URL.
func startWithGuide(t *testing.T, emit func(ctx context.Context, tp *sdktrace.TracerProvider)) (*server.Server, string) {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr, cfg.HTTPAddr, cfg.ZipkinAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	s, err := server.Start(cfg, api.BuildInfo{Version: "test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := guidetrace.NewTracerProvider(guidetrace.ServiceTaskAPI, sdktrace.WithBatcher(exp))
	emit(ctx, tp)
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("SDK shutdown (flush to Ariadne): %v", err)
	}
	return s, "http://" + s.HTTPAddr
}

// TestTraceCommand sends the guide's create-task trace through the real SDK to a running Ariadne
// and prints it with `ariadne trace`, as a user would.
func TestTraceCommand(t *testing.T) {
	var tr, denied guidetrace.Trace
	_, srv := startWithGuide(t, func(ctx context.Context, tp *sdktrace.TracerProvider) {
		tr = guidetrace.CreateTask(ctx, tp, guidetrace.DefaultBase) // fixed times: the golden file holds them
		denied = guidetrace.PermissionDenied(ctx, tp, guidetrace.DefaultBase.Add(time.Second))
	})

	var out, errOut bytes.Buffer
	if code := run([]string{"trace", "--server", srv, tr.TraceID.String()}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	golden(t, "create_task.txt", out.String())

	out.Reset()
	if code := run([]string{"trace", "--server", srv, "--attributes", "--events", tr.TraceID.String()}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	golden(t, "create_task_details.txt", out.String())

	out.Reset()
	if code := run([]string{"trace", "--server", srv, "--events", denied.TraceID.String()}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "✗ ERROR") || !strings.Contains(out.String(), "PermissionError") {
		t.Errorf("permission-denied trace without its error and exception:\n%s", out.String())
	}

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"trace", "--server", srv, "0123456789abcdef0123456789abcdef"}, 1, "not found"},
		{[]string{"trace", "--server", srv, "xyz"}, 2, `invalid trace ID "xyz"`},
		{[]string{"trace", "--server", srv, tr.TraceID.String()[:20]}, 2, "invalid trace ID"},
		{[]string{"why", tr.TraceID.String()[:31], "--server", srv}, 2, "invalid trace ID"},
		{[]string{"trace", "--server", "http://127.0.0.1:1", tr.TraceID.String()}, 1, "cannot reach"},
		{[]string{"trace"}, 2, "ariadne: missing trace ID\n\nUsage:"},
		{[]string{"trace", tr.TraceID.String(), "--bogus"}, 2, "ariadne: unknown flag: --bogus\n\nUsage:"},
		{[]string{"trace", tr.TraceID.String(), "--color", "red", "--server", srv}, 2, "--color \"red\""},
	} {
		errOut.Reset()
		if code := run(c.args, &out, &errOut); code != c.code || !strings.Contains(errOut.String(), c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, errOut.String(), c.code, c.msg)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "ariadne ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "  serve ") {
		t.Fatalf("help: %d %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"serve", "-h"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "--data-dir") {
		t.Fatalf("serve -h: %d %q", code, out.String())
	}
	errOut.Reset()
	if code := run([]string{"bogus"}, &out, &errOut); code != 2 || !strings.HasPrefix(errOut.String(), `ariadne: unknown command "bogus"`) {
		t.Fatalf("unknown command: exit %d, %q", code, errOut.String())
	}
}

// TestAnalysisCommands runs why, lint and diff against a running Ariadne holding the guide's traces.
func TestAnalysisCommands(t *testing.T) {
	var tr, denied guidetrace.Trace
	base := time.Now().Add(-time.Minute)
	_, srv := startWithGuide(t, func(ctx context.Context, tp *sdktrace.TracerProvider) {
		tr = guidetrace.CreateTask(ctx, tp, base)
		denied = guidetrace.PermissionDenied(ctx, tp, base.Add(time.Second))
	})
	var out, errOut bytes.Buffer
	if code := run([]string{"why", "--server", srv, tr.TraceID.String()}, &out, &errOut); code != 0 {
		t.Fatalf("why: exit %d %s", code, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "POST /api/tasks took 250ms; 180ms (72%) is pymongo.insert_one") {
		t.Errorf("why:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"lint", "--server", srv, "--since", "1h"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "2 traces examined") {
		t.Errorf("lint: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run([]string{"diff", "--server", srv, tr.TraceID.String(), denied.TraceID.String()}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "+ DELETE") {
		t.Errorf("diff: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"why", "--server", srv, "0123456789abcdef0123456789abcdef"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "not found") {
		t.Errorf("why unknown: exit %d %s", code, errOut.String())
	}
}

func TestStatusCommand(t *testing.T) {
	s, _ := startWithGuide(t, func(ctx context.Context, tp *sdktrace.TracerProvider) {
		guidetrace.CreateTask(ctx, tp, time.Now())
	})
	s.Store.Flush()
	var out, errOut bytes.Buffer
	if code := run([]string{"status", "--server", "http://" + s.HTTPAddr}, &out, &errOut); code != 0 {
		t.Fatalf("status: exit %d %s", code, errOut.String())
	}
	for _, want := range []string{"spans received 9, accepted 9", "1 blocks", "9 spans", "off: every trace is kept", "compaction: 0 merged blocks"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSearchCommand(t *testing.T) {
	var tr, denied guidetrace.Trace
	base := time.Now().Add(-time.Minute)
	_, srv := startWithGuide(t, func(ctx context.Context, tp *sdktrace.TracerProvider) {
		tr = guidetrace.CreateTask(ctx, tp, base)
		denied = guidetrace.PermissionDenied(ctx, tp, base.Add(time.Second))
	})

	var out, errOut bytes.Buffer
	if code := run([]string{"search", "--server", srv, `{ resource.service.name = "task-api" && status = error }`}, &out, &errOut); code != 0 {
		t.Fatalf("search: exit %d %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], denied.TraceID.String()) || !strings.Contains(lines[1], "DELETE /api/tasks/{id}") {
		t.Fatalf("search for errors:\n%s", out.String())
	}
	// The first column pastes into `ariadne trace`.
	id := strings.Fields(lines[1])[0]
	out.Reset()
	if code := run([]string{"trace", "--server", srv, id}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "check_authorization") {
		t.Fatalf("trace of a search result: exit %d\n%s", code, out.String())
	}
	out.Reset()
	run([]string{"search", "--server", srv, `{ span.db.system = "mongodb" && duration > 100ms }`}, &out, &errOut)
	if !strings.Contains(out.String(), tr.TraceID.String()) || strings.Contains(out.String(), denied.TraceID.String()) {
		t.Fatalf("search for the slow insert:\n%s", out.String())
	}
	errOut.Reset()
	if code := run([]string{"search", "--server", srv, `{ duration > }`}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "1:") {
		t.Fatalf("bad query: exit %d, %q", code, errOut.String())
	}
}
