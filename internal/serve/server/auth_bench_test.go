package server_test

import (
	"context"
	"encoding/binary"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

// processCPU is the CPU time the process has used, user and system, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// benchSpans is one export's worth of spans (what a batch span processor sends): n spans of
// n/10 traces, each with a few attributes.
func benchSpans(n int) []sdktrace.ReadOnlySpan {
	res := resource.NewSchemaless(attribute.String("service.name", "bench"))
	now := time.Now().Add(-time.Minute)
	stubs := make(tracetest.SpanStubs, n)
	for i := range stubs {
		var tid trace.TraceID
		var sid trace.SpanID
		binary.BigEndian.PutUint64(tid[8:], uint64(i/10+1))
		binary.BigEndian.PutUint64(sid[:], uint64(i+1))
		stubs[i] = tracetest.SpanStub{Name: "GET /api/tasks", Resource: res,
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}),
			StartTime:   now, EndTime: now.Add(time.Millisecond), SpanKind: trace.SpanKindServer,
			Attributes: []attribute.KeyValue{attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 200),
				attribute.String("url.path", "/api/tasks")}}
	}
	return stubs.Snapshots()
}

// BenchmarkOTLPExportAuth is the cost of authentication per export: the real OpenTelemetry SDK
// exporter sends 100-span exports over gRPC and HTTP to a server with authentication off and on
// (bearer token checked and the tenant resolved on every request). The difference between the
// pairs is what a token costs; BenchmarkGate in internal/serve/auth is the check alone.
func BenchmarkOTLPExportAuth(b *testing.B) {
	spans := benchSpans(100)
	for _, transport := range []string{"grpc", "http"} {
		for _, withAuth := range []bool{false, true} {
			name := transport + "/auth=off"
			if withAuth {
				name = transport + "/auth=on"
			}
			b.Run(name, func(b *testing.B) {
				cfg := testConfig(b.TempDir())
				if withAuth {
					cfg = authConfig(b.TempDir())
				}
				cfg.Ingest.MaxSpansPerTrace = -1 // the same traces are sent again and again
				cfg.Ingest.MaxRequestBytes = 16 << 20
				s, err := server.Start(cfg, api.BuildInfo{Version: "bench"}, slog.New(slog.DiscardHandler))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Stop(context.Background())
				hdr := map[string]string{}
				if withAuth {
					hdr["Authorization"] = "Bearer " + tokWrite
				}
				ctx := context.Background()
				var exp sdktrace.SpanExporter
				if transport == "grpc" {
					exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr), otlptracegrpc.WithInsecure(), otlptracegrpc.WithHeaders(hdr))
				} else {
					exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.OTLPHTTPAddr), otlptracehttp.WithInsecure(), otlptracehttp.WithHeaders(hdr))
				}
				if err != nil {
					b.Fatal(err)
				}
				defer exp.Shutdown(ctx)
				if err := exp.ExportSpans(ctx, spans); err != nil { // connect before timing
					b.Fatal(err)
				}
				b.ReportAllocs()
				// CPU time (client and server share the process) says more than wall time on a
				// machine other work keeps busy.
				cpu0 := processCPU()
				b.ResetTimer()
				// Parallel exporters share the WAL's fsyncs, so the per-request costs
				// (decoding, authentication) are what remains to tell the pairs apart.
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := exp.ExportSpans(ctx, spans); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
