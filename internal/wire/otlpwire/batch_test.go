package otlpwire

import (
	"testing"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// A batch holds what ScanRequest hands out, span by span, with each span's own group, and
// keeps it after the scan (ScanRequest reuses its Group and Span).
func TestBatchMatchesScanRequest(t *testing.T) {
	res := func(svc string) *resourcepb.Resource {
		return &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", svc)}}
	}
	req, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{Resource: res("a"), ScopeSpans: []*tracepb.ScopeSpans{
			{Scope: &commonpb.InstrumentationScope{Name: "s1"}, Spans: []*tracepb.Span{span(1, 1, nil, "x", 0), span(1, 2, nil, "y", 2)}},
			{Scope: &commonpb.InstrumentationScope{Name: "s2"}, Spans: []*tracepb.Span{span(2, 3, nil, "z", 0)}},
		}},
		{Resource: res("b"), ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span(3, 4, nil, "w", 0)}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	type seen struct{ service, scope, name string }
	var want []seen
	if err := ScanRequest(req, func(g *Group, s *Span) error {
		want = append(want, seen{string(g.ServiceName), string(g.Scope), string(s.Name)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var b Batch
	for round := range 2 { // the second scan reuses the batch
		if err := b.Scan(req); err != nil {
			t.Fatal(err)
		}
		if b.Len() != len(want) || len(b.Groups) != 3 {
			t.Fatalf("round %d: %d spans in %d groups, want %d in 3", round, b.Len(), len(b.Groups), len(want))
		}
		for i := range b.Spans {
			g := b.Group(i)
			if got := (seen{string(g.ServiceName), string(g.Scope), string(b.Spans[i].Name)}); got != want[i] {
				t.Fatalf("round %d span %d: %+v, want %+v", round, i, got, want[i])
			}
		}
	}
	b.Release()
	if b.Len() != 0 || len(b.Groups) != 0 {
		t.Fatal("Release left spans")
	}
	if err := b.Scan(req[:len(req)-3]); err == nil {
		t.Fatal("a cut request scanned without error")
	}
}
