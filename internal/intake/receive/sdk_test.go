package receive

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// sent describes the spans emitSpans produced, to compare with what the
// consumer received.
type sent struct {
	traceID trace.TraceID
	root    trace.SpanID
	child   trace.SpanID
}

// emitSpans exports a parent and a child span through exp with the real SDK.
func emitSpans(t *testing.T, exp sdktrace.SpanExporter) sent {
	t.Helper()
	ctx := testContext(t)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "checkout"))),
	)
	tracer := tp.Tracer("receive-test", trace.WithInstrumentationVersion("1.2.3"))
	ctx, root := tracer.Start(ctx, "GET /cart", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.Int64("http.status_code", 500), attribute.StringSlice("tags", []string{"a", "b"})))
	_, child := tracer.Start(ctx, "SELECT carts", trace.WithSpanKind(trace.SpanKindClient))
	child.AddEvent("retry", trace.WithAttributes(attribute.Bool("final", true)))
	child.End()
	root.SetStatus(codes.Error, "upstream failed")
	root.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("exporting through the SDK: %v", err)
	}
	return sent{traceID: root.SpanContext().TraceID(), root: root.SpanContext().SpanID(), child: child.SpanContext().SpanID()}
}

func checkReceived(t *testing.T, rec *recorder, want sent) {
	t.Helper()
	spans := rec.spans()
	if len(spans) != 2 {
		t.Fatalf("consumer got %d spans, want 2", len(spans))
	}
	byName := map[string]*tracepb.Span{}
	for _, s := range spans {
		byName[s.Name] = s
		if !bytes.Equal(s.TraceId, want.traceID[:]) {
			t.Errorf("%s: trace id %x, want %x", s.Name, s.TraceId, want.traceID[:])
		}
	}
	root, child := byName["GET /cart"], byName["SELECT carts"]
	if root == nil || child == nil {
		t.Fatalf("span names: %v", byName)
	}
	if !bytes.Equal(root.SpanId, want.root[:]) || len(root.ParentSpanId) != 0 {
		t.Errorf("root ids: span %x parent %x", root.SpanId, root.ParentSpanId)
	}
	if !bytes.Equal(child.SpanId, want.child[:]) || !bytes.Equal(child.ParentSpanId, want.root[:]) {
		t.Errorf("child ids: span %x parent %x", child.SpanId, child.ParentSpanId)
	}
	if root.Kind != tracepb.Span_SPAN_KIND_SERVER || child.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("kinds: %v %v", root.Kind, child.Kind)
	}
	if root.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || root.Status.GetMessage() != "upstream failed" {
		t.Errorf("root status: %v", root.Status)
	}
	if got := root.Attributes; len(got) != 2 || got[0].Key != "http.status_code" || got[0].Value.GetIntValue() != 500 ||
		len(got[1].Value.GetArrayValue().GetValues()) != 2 {
		t.Errorf("root attributes: %v", got)
	}
	if len(child.Events) != 1 || child.Events[0].Name != "retry" || !child.Events[0].Attributes[0].Value.GetBoolValue() {
		t.Errorf("child events: %v", child.Events)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rs := rec.requests[0].ResourceSpans[0]
	if len(rs.Resource.GetAttributes()) != 1 || rs.Resource.Attributes[0].Value.GetStringValue() != "checkout" {
		t.Errorf("resource: %v", rs.Resource)
	}
	if sc := rs.ScopeSpans[0].Scope; sc.GetName() != "receive-test" || sc.GetVersion() != "1.2.3" {
		t.Errorf("scope: %v", sc)
	}
}

func TestGRPCWithSDKExporter(t *testing.T) {
	for _, compressor := range []string{"", "gzip"} {
		t.Run("compressor="+compressor, func(t *testing.T) {
			rec := &recorder{}
			addr := startGRPC(t, rec, GRPCConfig{})
			opts := []otlptracegrpc.Option{
				otlptracegrpc.WithEndpoint(addr),
				otlptracegrpc.WithInsecure(),
				otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}),
			}
			if compressor != "" {
				opts = append(opts, otlptracegrpc.WithCompressor(compressor))
			}
			exp, err := otlptracegrpc.New(context.Background(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			checkReceived(t, rec, emitSpans(t, exp))
		})
	}
}

func TestHTTPWithSDKExporter(t *testing.T) {
	for _, tc := range []struct {
		name     string
		encoding otlptracehttp.Encoding
		gzip     bool
	}{
		{"protobuf", otlptracehttp.EncodingProtobuf, false},
		{"protobuf+gzip", otlptracehttp.EncodingProtobuf, true},
		{"json", otlptracehttp.EncodingJSON, false},
		{"json+gzip", otlptracehttp.EncodingJSON, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			var seenEncoding, seenType atomic.Value
			h := NewHTTPHandler(rec, HTTPConfig{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seenEncoding.Store(r.Header.Get("Content-Encoding"))
				seenType.Store(r.Header.Get("Content-Type"))
				h.ServeHTTP(w, r)
			}))
			defer srv.Close()
			compression := otlptracehttp.NoCompression
			if tc.gzip {
				compression = otlptracehttp.GzipCompression
			}
			exp, err := otlptracehttp.New(context.Background(),
				otlptracehttp.WithEndpointURL(srv.URL+TracesPath),
				otlptracehttp.WithEncoding(tc.encoding),
				otlptracehttp.WithCompression(compression),
				otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}),
			)
			if err != nil {
				t.Fatal(err)
			}
			checkReceived(t, rec, emitSpans(t, exp))
			if tc.gzip != (seenEncoding.Load() == "gzip") {
				t.Errorf("Content-Encoding seen by the server: %q", seenEncoding.Load())
			}
			if wantJSON := tc.encoding == otlptracehttp.EncodingJSON; wantJSON != (seenType.Load() == contentTypeJSON) {
				t.Errorf("Content-Type seen by the server: %q", seenType.Load())
			}
		})
	}
}
