package server_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

// TestPerTenantOverridesReloaded: a tenant's rate comes from the overrides section of the config
// file, other tenants keep the default, and editing the file changes the tenant's rate while the
// server runs.
func TestPerTenantOverridesReloaded(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ariadne.yaml")
	write := func(rate string) {
		body := "multitenancy_enabled: true\noverrides:\n  per_tenant:\n    alpha: {rate_limit_spans_per_second: " + rate + "}\n"
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("100")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	base := testConfig(filepath.Join(dir, "data"))
	cfg.DataDir, cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr, cfg.HTTPAddr, cfg.ZipkinAddr = base.DataDir, base.OTLPGRPCAddr, base.OTLPHTTPAddr, base.HTTPAddr, base.ZipkinAddr
	s := startServer(t, cfg)
	client := grpcClient(t, s)
	as := func(tenant string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "x-scope-orgid", tenant)
	}
	next := byte(1)
	spans := func(n int) []*tracepb.Span {
		var out []*tracepb.Span
		for i := 0; i < n; i++ {
			sp := validSpan(next, byte(i%200+1))
			sp.TraceId[1] = byte(i / 200)
			out = append(out, sp)
		}
		next++
		return out
	}
	if _, err := client.Export(as("alpha"), request(spans(100)...)); err != nil {
		t.Fatalf("alpha within its burst: %v", err)
	}
	if _, err := client.Export(as("alpha"), request(spans(100)...)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("alpha over its override of 100 spans/s: %v", err)
	}
	for range 3 {
		if _, err := client.Export(as("bravo"), request(spans(100)...)); err != nil {
			t.Fatalf("bravo has no override and no default limit: %v", err)
		}
	}
	// Raise alpha's rate in the file; the running server picks it up.
	write("1000000")
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := client.Export(as("alpha"), request(spans(100)...))
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("alpha after raising its override: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Back to 100 spans/s, then a file that no longer parses: the last good overrides stay in
	// force (the default, unlimited, would let alpha through).
	write("100")
	deadline = time.Now().Add(20 * time.Second)
	for {
		_, err := client.Export(as("alpha"), request(spans(150)...))
		if status.Code(err) == codes.ResourceExhausted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alpha after lowering its override again: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := os.WriteFile(path, []byte("overrides: [not, a, map\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	// 400 spans at once against a burst of 100: some must be refused.
	refused := 0
	for range 5 {
		if _, err := client.Export(as("alpha"), request(spans(80)...)); status.Code(err) == codes.ResourceExhausted {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("alpha after a broken edit of the file is no longer limited to 100 spans/s")
	}
}

// exportAs sends the traces build makes for tenant through the real OpenTelemetry SDK over gRPC.
func exportAs(t *testing.T, s *server.Server, tenant string, build func(tr trace.Tracer)) {
	t.Helper()
	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithHeaders(map[string]string{"X-Scope-OrgID": tenant}))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", tenant+"-svc"))))
	build(tp.Tracer("overrides"))
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("export as %s: %v", tenant, err)
	}
}

// fiveSpans is one trace of a root and four children, each with a 16-byte attribute and
// keep=<keep> for the tail-sampling policy. It answers the trace ID.
func fiveSpans(tr trace.Tracer, keep string) string {
	start := time.Now().Add(-2 * time.Hour)
	ctx, root := tr.Start(context.Background(), "root", trace.WithTimestamp(start),
		trace.WithAttributes(attribute.String("note", "0123456789abcdef"), attribute.String("keep", keep)))
	for i := range 4 {
		_, c := tr.Start(ctx, "child", trace.WithTimestamp(start.Add(time.Duration(i)*time.Millisecond)),
			trace.WithAttributes(attribute.String("note", "0123456789abcdef"), attribute.String("keep", keep)))
		c.End(trace.WithTimestamp(start.Add(time.Duration(i+1) * time.Millisecond)))
	}
	root.End(trace.WithTimestamp(start.Add(10 * time.Millisecond)))
	return root.SpanContext().TraceID().String()
}

// TestPerTenantOverridesLive: span limits, tail-sampling policies, query limits and retention
// come from the overrides section (a tenant's entry over the defaults over the sections), and
// editing the file changes them for the next requests while the server runs.
func TestPerTenantOverridesLive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ariadne.yaml")
	write := func(overrides string) {
		if err := os.WriteFile(path, []byte("multitenancy_enabled: true\noverrides:\n"+overrides), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`  per_tenant:
    alpha:
      max_spans_per_trace: 3
      max_attribute_value_bytes: 8
      tail_sampling: {policies: [{type: string_attribute, key: keep, values: ["yes"]}]}
      query: {max_spans_per_span_set: 2}
`)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	base := testConfig(filepath.Join(dir, "data"))
	cfg.DataDir, cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr, cfg.HTTPAddr, cfg.ZipkinAddr = base.DataDir, base.OTLPGRPCAddr, base.OTLPHTTPAddr, base.HTTPAddr, base.ZipkinAddr
	s := startServer(t, cfg)
	api := "http://" + s.HTTPAddr

	var ids = map[string]string{}
	send := func(name, tenant, keep string) {
		exportAs(t, s, tenant, func(tr trace.Tracer) { ids[name] = fiveSpans(tr, keep) })
	}
	flush := func(tenant string) {
		if err := s.TenantStore(tenant).Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// spans reads a trace back: its span count and whether its attribute came back whole.
	spans := func(tenant, name string) (n int, whole, cut bool) {
		code, body := getTenant(t, api+"/api/traces/"+ids[name], tenant)
		if code == 404 {
			return 0, false, false
		}
		if code != 200 {
			t.Fatalf("trace %s of %s: %d %s", name, tenant, code, body)
		}
		return strings.Count(body, `"spanId"`), strings.Contains(body, "0123456789abcdef"), strings.Contains(body, `"01234567"`)
	}
	reloads := func() float64 { return metricValue(scrape(t, s), "ariadne_overrides_reloads_total", nil) }
	reload := func(overrides string) {
		t.Helper()
		before := reloads()
		write(overrides)
		for deadline := time.Now().Add(30 * time.Second); reloads() == before; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the server did not re-read the changed overrides")
			}
		}
	}

	send("a1", "alpha", "yes")
	send("a2", "alpha", "no")
	send("b1", "bravo", "no")
	flush("alpha")
	flush("bravo")
	if n, whole, cut := spans("alpha", "a1"); n != 3 || whole || !cut {
		t.Errorf("alpha's trace under its overrides: %d spans, whole %v, cut %v; want 3 spans, values cut to 8 bytes", n, whole, cut)
	}
	if n, _, _ := spans("alpha", "a2"); n != 0 {
		t.Errorf("alpha's trace without keep=yes was kept (%d spans) by alpha's tail-sampling policy", n)
	}
	if n, whole, _ := spans("bravo", "b1"); n != 5 || !whole {
		t.Errorf("bravo (no overrides): %d spans, whole %v; want the defaults (5 spans, whole values)", n, whole)
	}
	searchSpss := func(tenant string) int {
		code, _ := getTenant(t, api+"/api/search?q="+url.QueryEscape("{}")+"&spss=3", tenant)
		return code
	}
	if a, b := searchSpss("alpha"), searchSpss("bravo"); a != 400 || b != 200 {
		t.Errorf("spss=3 against alpha's max_spans_per_span_set 2: alpha %d (want 400), bravo %d (want 200)", a, b)
	}

	// New values in the file: alpha's entry loosened and its sampling gone, new defaults for
	// everyone else (bravo, and charlie, never named).
	reload(`  defaults: {max_attribute_value_bytes: 4}
  per_tenant:
    alpha: {max_attribute_value_bytes: 100}
`)
	send("a3", "alpha", "no")
	send("b3", "bravo", "no")
	send("c3", "charlie", "no")
	flush("alpha")
	flush("bravo")
	flush("charlie")
	if n, whole, _ := spans("alpha", "a3"); n != 5 || !whole {
		t.Errorf("alpha after the edit: %d spans, whole %v; want 5 spans (no sampling, default span limit), whole values", n, whole)
	}
	for _, c := range [][2]string{{"bravo", "b3"}, {"charlie", "c3"}} {
		code, body := getTenant(t, api+"/api/traces/"+ids[c[1]], c[0])
		if code != 200 || !strings.Contains(body, `"0123"`) || strings.Contains(body, "01234567") {
			t.Errorf("%s after new defaults: %d, want values cut to 4 bytes: %.400s", c[0], code, body)
		}
	}
	if a := searchSpss("alpha"); a != 200 {
		t.Errorf("spss=3 after alpha's query override was removed: %d", a)
	}

	// Retention: alpha's blocks (spans two hours old) go at its next flush, bravo's stay.
	reload(`  per_tenant:
    alpha: {retention: 1ns}
`)
	flush("alpha")
	flush("bravo")
	if n, _, _ := spans("alpha", "a1"); n != 0 {
		t.Errorf("alpha's trace outlived a retention of 1ns")
	}
	if n, _, _ := spans("bravo", "b1"); n != 5 {
		t.Errorf("bravo's trace was deleted by alpha's retention (%d spans)", n)
	}
}
