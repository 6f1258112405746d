package treeview

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

// TestGuideTracesThroughOTLP sends the guide's traces with the real OTLP/HTTP
// exporter and draws what arrived, so the drawings stay tied to what the SDK
// actually produces rather than to hand-built spans.
func TestGuideTracesThroughOTLP(t *testing.T) {
	var mu sync.Mutex
	got := &tracepb.TracesData{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		// ExportTraceServiceRequest and TracesData share field 1.
		var req tracepb.TracesData
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Error(err)
		}
		mu.Lock()
		got.ResourceSpans = append(got.ResourceSpans, req.ResourceSpans...)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()

	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	p := guidetrace.NewProviders(sdktrace.WithBatcher(exp))
	traces, err := guidetrace.EmitAll(ctx, p, guidetrace.DefaultBase)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	var all bytes.Buffer
	for _, tr := range traces {
		td := only(got, tr.TraceID[:])
		var buf bytes.Buffer
		if err := Render(&buf, td, Options{Events: true, Attributes: tr.Name == guidetrace.NameCreateTask}); err != nil {
			t.Fatalf("%s: %v", tr.Name, err)
		}
		checkWidth(t, buf.String(), DefaultWidth)
		all.WriteString(buf.String() + "\n")
	}
	golden(t, "guide_traces.txt", all.String())
}

// only keeps the spans of one trace, in a deterministic resource order.
func only(td *tracepb.TracesData, traceID []byte) *tracepb.TracesData {
	out := &tracepb.TracesData{}
	for _, rs := range td.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			var keep []*tracepb.Span
			for _, s := range ss.GetSpans() {
				if bytes.Equal(s.GetTraceId(), traceID) {
					keep = append(keep, s)
				}
			}
			if len(keep) > 0 {
				out.ResourceSpans = append(out.ResourceSpans, &tracepb.ResourceSpans{
					Resource:   rs.GetResource(),
					ScopeSpans: []*tracepb.ScopeSpans{{Scope: ss.GetScope(), Spans: keep}},
				})
			}
		}
	}
	return out
}
